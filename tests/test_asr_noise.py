"""Simulated ASR errors: deterministic, span re-mapping exact, numbers written in digits, homophones."""

from __future__ import annotations

import random

import pytest

from data.asr_noise import FILLERS, AsrNoiseOptions, add_asr_noise, confusable
from models.intent.itn import scan_numbers

TEXT = "我要投诉，订单号幺三八零零一二三四五六，退款一百二十八块五，手机是一三九一二三四五六七八，买的是华为手机"
SURFACES = {"order_id": "幺三八零零一二三四五六", "amount": "一百二十八块五", "phone": "一三九一二三四五六七八"}
SPANS = [(k, TEXT.index(v), TEXT.index(v) + len(v)) for k, v in SURFACES.items()]
SPANS.append(("product", TEXT.index("华为手机"), TEXT.index("华为手机") + 4, "华为手机"))
HEAVY = AsrNoiseOptions(substitute=0.3, drop=0.1, insert=0.1, number_scale=1.0, arabic_digits=0.5)


def test_deterministic_per_rng():
    a = add_asr_noise(TEXT, SPANS, random.Random(3), HEAVY)
    b = add_asr_noise(TEXT, SPANS, random.Random(3), HEAVY)
    assert a == b
    assert a == add_asr_noise(TEXT, SPANS, 3, HEAVY)  # an int seed is the same as Random(seed)
    assert len({add_asr_noise(TEXT, SPANS, random.Random(s), HEAVY).text for s in range(10)}) > 5


def _is_noised_version(orig: str, new: str) -> bool:
    """``new`` is what the noise can make of ``orig``: a number in Arabic digits (ITN's rendering), or per
    character: dropped, kept or replaced by a confusable, then optionally followed by one inserted character."""
    rendered = {n.render() for n in scan_numbers(orig) if (n.start, n.end) == (0, len(orig))}
    if new in rendered:
        return True

    def ok(i: int, j: int) -> bool:  # orig[i:] -> new[j:]
        if i == len(orig):
            return j == len(new)
        c = orig[i]
        outs = {c} | set(sum(confusable(c), ()))
        if not ("\u4e00" <= c <= "\u9fff"):
            outs = {c}
        options = [j] if "\u4e00" <= c <= "\u9fff" else []  # dropped
        if j < len(new) and new[j] in outs:
            options.append(j + 1)
            if j + 1 < len(new):
                ins = new[j + 1]
                if ins in FILLERS or ins in sum(confusable(new[j]), ()):
                    options.append(j + 2)
        return any(ok(i + 1, o) for o in options)

    return ok(0, 0)


def test_span_surface_is_noised_version_of_original():
    """Property: the re-mapped span's surface is exactly the noise applied to the original span's units,
    and the alignment covers both texts without gaps."""
    for seed in range(150):
        out = add_asr_noise(TEXT, SPANS, random.Random(seed), HEAVY)
        al = out.alignment
        assert al[0][0] == 0 and al[-1][1] == len(TEXT) and al[0][2] == 0 and al[-1][3] == len(out.text)
        for (a0, b0, c0, d0), (a1, b1, c1, d1) in zip(al, al[1:]):
            assert b0 == a1 and d0 == c1
        for a, b, c, d in al:
            assert _is_noised_version(TEXT[a:b], out.text[c:d]), (TEXT[a:b], out.text[c:d])
        for label, ns, ne, *rest in out.spans:
            start, end = next((s[1], s[2]) for s in SPANS if s[0] == label)
            units = [u for u in al if start <= u[0] and u[1] <= end]
            assert "".join(out.text[c:d] for _, _, c, d in units) == out.text[ns:ne]
            assert units[0][0] == start and units[-1][1] == end  # no unit straddles the span
            if rest:
                assert rest[0] == out.text[ns:ne]  # the surface field is updated
        dropped = {s[0] for s in SPANS} - {s[0] for s in out.spans}
        for label in dropped:  # a span disappears only when all its characters were dropped
            start, end = next((s[1], s[2]) for s in SPANS if s[0] == label)
            assert all(c == d for a, b, c, d in al if start <= a and b <= end)


def test_without_noise_spans_are_unchanged():
    quiet = AsrNoiseOptions(substitute=0, drop=0, insert=0, arabic_digits=0)
    out = add_asr_noise(TEXT, SPANS, random.Random(0), quiet)
    assert out.text == TEXT
    assert out.spans == tuple(tuple(s) for s in SPANS)
    assert out.n_edits == 0


def test_numbers_written_as_digits_keep_their_spans():
    digits_only = AsrNoiseOptions(substitute=0, drop=0, insert=0, arabic_digits=1.0)
    out = add_asr_noise(TEXT, SPANS, random.Random(0), digits_only)
    surfaces = {s[0]: out.text[s[1] : s[2]] for s in out.spans}
    assert surfaces == {"order_id": "13800123456", "amount": "128.5元", "phone": "13912345678", "product": "华为手机"}
    assert out.text == "我要投诉，订单号13800123456，退款128.5元，手机是13912345678，买的是华为手机"


def test_number_straddling_a_span_boundary_is_not_rewritten():
    text = "一百二十八块"
    out = add_asr_noise(text, [("amount", 0, 3)], random.Random(0), AsrNoiseOptions(0, 0, 0, arabic_digits=1.0))
    assert out.text == text


def test_substitutions_sound_alike():
    subs = AsrNoiseOptions(substitute=0.5, drop=0, insert=0, arabic_digits=0, number_scale=1.0, near_share=0.0)
    out = add_asr_noise(TEXT, SPANS, random.Random(1), subs)
    assert len(out.text) == len(TEXT)
    changed = [(a, b) for a, b in zip(TEXT, out.text) if a != b]
    assert len(changed) > 5
    from pypinyin import Style, lazy_pinyin

    for a, b in changed:  # near_share=0: exact homophones (toneless pinyin) only
        assert lazy_pinyin(a, style=Style.NORMAL) == lazy_pinyin(b, style=Style.NORMAL), (a, b)
    assert [s[1:3] for s in out.spans] == [s[1:3] for s in SPANS]  # same length: spans do not move


def test_confusable_sets():
    same, near = confusable("诉")
    assert "素" in same and "诉" not in same and "诉" not in near
    _, near_zh = confusable("知")  # zhi ~ zi
    assert any(c in near_zh for c in "资子字自")
    _, near_n = confusable("男")  # nan ~ lan
    assert "蓝" in near_n
    assert confusable("A") == ((), ())


def test_bad_span_is_explained():
    with pytest.raises(ValueError, match="inside a text"):
        add_asr_noise("你好", [("phone", 0, 5)], random.Random(0))
