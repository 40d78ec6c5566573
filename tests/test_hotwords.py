"""Hotwords from the product catalogue (issue 15): the list models/catalogue.py derives (deterministic, bounded, brands
first, the caller's products before the catalogue's), and the one path that hands it to the recogniser: the pipeline
(sync and async), the remote recogniser adapter of the service, and the live stream's decodes.

The recognisers here are recording stand-ins: they capture the arguments the pipeline passes (a check of the wiring,
not of recognition; scripts/bench_hotwords.py measures whether hotwords help)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from models.asr.dialects import DIALECT_PROMPTS, HOTWORD_SEPARATOR, MAX_PROMPT_TOKENS, dialect_prompt
from models.catalogue import (
    HOTWORD_BUDGET_BYTES,
    HOTWORDS_ENV,
    MAX_CUSTOMER_HOTWORDS,
    SAMPLE_CATALOGUE,
    Catalogue,
    CatalogueError,
    call_hotwords,
    catalogue_hotwords,
    default_hotwords,
    hotword_bytes,
    hotwords_enabled,
)
from models.pipeline import Pipeline, Transcription

RATE = 16000


@pytest.fixture(scope="module")
def sample() -> Catalogue:
    return Catalogue.load(SAMPLE_CATALOGUE)


@pytest.fixture(autouse=True)
def _default_env(monkeypatch):
    monkeypatch.setenv(HOTWORDS_ENV, "on")  # these tests exercise hotwords; the default (off) is checked below
    monkeypatch.delenv("HOTLINE_CATALOGUE", raising=False)


SMALL = [
    {"name": "甲牌冰箱", "brand": "甲牌", "category": "fridge"},
    {"name": "乙牌空调", "brand": "乙牌", "category": "aircon"},
    {"name": "甲牌空调", "brand": "甲牌", "category": "aircon"},
    {"name": "宽带", "brand": None, "category": "network"},
    {"name": "光纤宽带", "brand": None, "category": "network"},
]


# -- the derived list ---------------------------------------------------------------------------------------------
def test_catalogue_hotwords_are_deterministic_and_bounded(sample):
    first = catalogue_hotwords(sample)
    assert first == catalogue_hotwords(Catalogue.load(SAMPLE_CATALOGUE))  # same file, same list
    assert first == catalogue_hotwords(Catalogue.from_records(
        [{"id": p.id, "name": p.name, "brand": p.brand, "category": p.category, "aliases": list(p.aliases)}
         for p in sample.products]))
    assert first and hotword_bytes(first) <= HOTWORD_BUDGET_BYTES
    assert len({w for w in first}) == len(first)  # no repeats
    for budget in (0, 5, 20, 60, 400):
        words = catalogue_hotwords(sample, budget)
        assert hotword_bytes(words) <= budget
        bigger, smaller = (words, first) if budget > HOTWORD_BUDGET_BYTES else (first, words)
        it = iter(bigger)
        assert all(w in it for w in smaller)  # the same order: a smaller budget keeps a subsequence
    assert catalogue_hotwords(sample, 0) == ()


def test_brands_come_first_most_products_first(sample):
    words = catalogue_hotwords(sample)
    brands = set(sample.brands)
    n = sum(1 for w in words if w in brands)
    assert all(w in brands for w in words[:n])  # brands, then names
    assert words[0] == "美的"  # the brand with the most products in the sample (4)
    small = catalogue_hotwords(Catalogue.from_records(SMALL), 400)
    # brands (甲牌 has two products), then branded names, then generic names, each in catalogue order. Only a word
    # inside an earlier one is dropped: 光纤宽带 holds 宽带 but comes after it, so both stay.
    assert small == ("甲牌", "乙牌", "甲牌冰箱", "乙牌空调", "甲牌空调", "宽带", "光纤宽带")
    assert catalogue_hotwords(Catalogue.from_records(SMALL), len("甲牌，乙牌".encode())) == ("甲牌", "乙牌")


def test_customer_products_go_first(sample):
    base = catalogue_hotwords(sample)
    words = call_hotwords(base, ["方太热水器", "美的空调", "方太热水器", "", "小米手机", "华为手机"])
    assert words[:MAX_CUSTOMER_HOTWORDS] == ("方太热水器", "美的空调", "小米手机")  # in order, no repeats, capped
    assert "华为手机" not in words
    assert "美的" not in words and "小米" not in words  # inside a customer product already
    assert hotword_bytes(words) <= HOTWORD_BUDGET_BYTES
    rest = [w for w in base if w not in ("美的", "小米")]
    after = list(words[MAX_CUSTOMER_HOTWORDS:])
    assert after == [w for w in rest if w in after]  # the catalogue's words in its order
    for w in rest:  # a catalogue word left out did not fit where it came
        if w not in after:
            before = [x for x in after if rest.index(x) < rest.index(w)]
            assert hotword_bytes([*words[:MAX_CUSTOMER_HOTWORDS], *before, w]) > HOTWORD_BUDGET_BYTES
    assert call_hotwords(base, []) == base
    assert call_hotwords((), ["美的空调"]) == ("美的空调",)
    assert call_hotwords(base, ["x" * 500]) == base  # a product longer than the budget is left out


def test_prompt_stays_under_whisper_limit(sample):
    """Bytes bound tokens for a byte-level BPE; with the real tokenizer (when the weights are here) the longest prompt
    a call can get is well under MAX_PROMPT_TOKENS."""
    words = call_hotwords(catalogue_hotwords(sample), ["苏泊尔电饭煲", "格兰仕微波炉", "小天鹅洗衣机"])
    longest = max(DIALECT_PROMPTS, key=lambda d: len(DIALECT_PROMPTS[d].encode()))
    prompt = dialect_prompt(longest, words)
    assert len((" " + prompt).encode()) <= HOTWORD_BUDGET_BYTES + 20 < MAX_PROMPT_TOKENS
    tok_file = Path(__file__).resolve().parent.parent / "data" / "weights" / "whisper-base-ct2" / "tokenizer.json"
    if not tok_file.is_file():
        pytest.skip("whisper-base weights not bootstrapped: the byte bound above is the check")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_file))
    n = len(tok.encode(" " + prompt, add_special_tokens=False).ids)
    assert n <= len((" " + prompt).encode()) and n < MAX_PROMPT_TOKENS - 60


def test_switch_and_default(monkeypatch, tmp_path, sample):
    monkeypatch.delenv(HOTWORDS_ENV)
    assert not hotwords_enabled() and default_hotwords() is None  # off by default
    monkeypatch.setenv(HOTWORDS_ENV, "on")
    assert hotwords_enabled() and default_hotwords() == catalogue_hotwords(sample)
    for off in ("off", "0", "False", "no"):
        monkeypatch.setenv(HOTWORDS_ENV, off)
        assert default_hotwords() is None
    monkeypatch.setenv(HOTWORDS_ENV, "maybe")
    with pytest.raises(CatalogueError, match=HOTWORDS_ENV):
        hotwords_enabled()
    monkeypatch.setenv(HOTWORDS_ENV, "on")
    company = tmp_path / "products.csv"
    company.write_text("name,brand,category,aliases\n甲牌冰箱,甲牌,fridge,\n", encoding="utf-8")
    monkeypatch.setenv("HOTLINE_CATALOGUE", str(company))  # the catalogue the slot step uses is the one hotwords use
    assert default_hotwords() == ("甲牌", "甲牌冰箱")


# -- the pipeline hands them to the recogniser ----------------------------------------------------------------------
def tone(seconds: float, f0: float = 180.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


class RecordingBatch:
    """Captures the arguments of each transcribe_batch call; answers a fixed text per segment."""

    def __init__(self):
        self.calls = []

    def transcribe_batch(self, audios, dialects=None, hotwords=()):
        self.calls.append({"n": len(audios), "dialects": list(dialects or []), "hotwords": tuple(hotwords)})
        return [Transcription("我的美的空调坏了", 0.9) for _ in audios]


class RecordingAsync(RecordingBatch):
    async def transcribe_batch(self, audios, dialects=None, hotwords=()):
        await asyncio.sleep(0)
        return RecordingBatch.transcribe_batch(self, audios, dialects, hotwords)


class RecordingSingle:
    def __init__(self):
        self.calls = []

    def transcribe(self, audio, dialect=None, hotwords=()):
        self.calls.append(tuple(hotwords))
        return "好的"


class NoHotwords:
    """An older recogniser without a hotwords parameter: it must still work."""

    def transcribe_batch(self, audios, dialects):
        return ["好的" for _ in audios]


def test_pipeline_passes_catalogue_and_customer_hotwords(sample):
    rec = RecordingBatch()
    looked_up = []

    def products(caller):
        looked_up.append(caller)
        return ["美的空调"]

    pipe = Pipeline(asr=rec, customer_products=products)
    pred = pipe.process({"id": "u1", "audio": tone(1.5), "caller": "13800138000"})
    assert "error" not in pred and pred["transcript"] == "我的美的空调坏了"
    assert looked_up == ["13800138000"]
    assert rec.calls[0]["hotwords"] == call_hotwords(catalogue_hotwords(sample), ["美的空调"])
    assert rec.calls[0]["hotwords"][0] == "美的空调"
    pipe.process({"id": "u2", "audio": tone(1.5)})  # no caller: the catalogue's alone
    assert rec.calls[1]["hotwords"] == catalogue_hotwords(sample)


def test_stereo_call_both_channels_get_the_same_hotwords(sample):
    rec = RecordingAsync()
    agent, customer = np.zeros(int(6 * RATE), np.float32), np.zeros(int(6 * RATE), np.float32)
    agent[RATE // 2: RATE // 2 + int(1.5 * RATE)] = tone(1.5, 130.0)
    customer[3 * RATE: 3 * RATE + int(1.5 * RATE)] = tone(1.5, 230.0)
    pipe = Pipeline(asr=rec, customer_products=lambda caller: ["华为手机"])
    pred = asyncio.run(pipe.aprocess({"id": "c1", "audio": np.stack([agent, customer]), "caller": "13900139000"}))
    assert "error" not in pred and pred["channel_layout"] == "stereo"
    assert len(rec.calls) == 1 and rec.calls[0]["n"] == len(pred["segments"]) >= 2  # one batch for both sides
    assert rec.calls[0]["hotwords"] == call_hotwords(catalogue_hotwords(sample), ["华为手机"])


def test_hotwords_off_and_recognisers_without_them(monkeypatch):
    rec = RecordingBatch()
    Pipeline(asr=rec, hotwords=False).process({"id": "a", "audio": tone(1.0)})
    assert rec.calls[-1]["hotwords"] == ()
    monkeypatch.setenv(HOTWORDS_ENV, "off")
    Pipeline(asr=rec, customer_products=lambda c: ["美的空调"]).process({"id": "b", "audio": tone(1.0), "caller": "1"})
    assert rec.calls[-1]["hotwords"] == ()  # off means off, the caller's products too
    monkeypatch.setenv(HOTWORDS_ENV, "on")
    Pipeline(asr=rec, hotwords=["甲牌"]).process({"id": "c", "audio": tone(1.0)})
    assert rec.calls[-1]["hotwords"] == ("甲牌",)
    single = RecordingSingle()
    Pipeline(asr=single, hotwords=["甲牌"]).process({"id": "d", "audio": tone(1.0)})
    assert single.calls == [("甲牌",)]
    pred = Pipeline(asr=NoHotwords()).process({"id": "e", "audio": tone(1.0), "caller": "1"})
    assert "error" not in pred and pred["transcript"] == "好的"


def test_failing_product_lookup_costs_only_the_customer_products(sample):
    rec = RecordingBatch()

    def broken(caller):
        raise RuntimeError("database down")

    pred = Pipeline(asr=rec, customer_products=broken).process({"id": "x", "audio": tone(1.0), "caller": "1"})
    assert "error" not in pred and rec.calls[0]["hotwords"] == catalogue_hotwords(sample)


# -- the service: remote recogniser, the runtime's product lookup, the stream ----------------------------------------
def test_remote_recogniser_carries_hotwords():
    from serving.adapters import RemoteRecognizer

    seen = []

    class Service:
        class to_async:  # noqa: N801 - BentoML's attribute name
            @staticmethod
            async def transcribe_segments(jobs):
                seen.extend(jobs)
                return [{"text": "好的", "confidence": 0.9} for _ in jobs]

    remote = RemoteRecognizer(Service())
    pipe = Pipeline(asr=remote, customer_products=lambda c: ["小米手机"])
    pred = asyncio.run(pipe.aprocess({"id": "r", "audio": tone(1.0), "caller": "1"}))
    assert "error" not in pred
    assert seen and seen[0].hotwords == list(call_hotwords(catalogue_hotwords(Catalogue.load(SAMPLE_CATALOGUE)),
                                                           ["小米手机"]))
    json.dumps(seen[0].hotwords, ensure_ascii=False)


def test_runtime_customer_products_newest_first_without_repeats():
    from serving.runtime import Runtime

    tickets = [SimpleNamespace(slots={"product": "美的空调"}), SimpleNamespace(slots={}),
               SimpleNamespace(slots={"product": "美的空调"}), SimpleNamespace(slots={"product": "小米手机"}),
               SimpleNamespace(slots={"product": "华为手机"}), SimpleNamespace(slots={"product": "海尔冰箱"})]
    asked = []

    class Store:
        def list_tickets(self, caller, limit):
            asked.append((caller, limit))
            return tickets[:limit], None

    fake = SimpleNamespace(store=Store())
    assert Runtime.customer_products(fake, "13800138000") == ["美的空调", "小米手机", "华为手机"]
    assert Runtime.customer_products(fake, None) == [] and len(asked) == 1


def test_stream_decodes_with_the_calls_hotwords(sample):
    from serving.stream import StreamSession

    rec = RecordingAsync()
    pipe = Pipeline(asr=rec, customer_products=lambda c: ["海信电视"])

    class Rt:
        async def pipeline(self):
            return pipe

    session = object.__new__(StreamSession)  # only what _decode reads: the full session needs a running service
    session.rt, session.caller, session.dialect, session.hotwords = Rt(), "13700137000", None, None
    text = asyncio.run(session._decode("customer", tone(1.0), 0.0))
    assert text == "我的美的空调坏了"
    want = call_hotwords(catalogue_hotwords(sample), ["海信电视"])
    assert session.hotwords == want and rec.calls[0]["hotwords"] == want
    # and the ticket's pipeline run at the end of the stream gives the recogniser the same list
    asyncio.run(pipe.aprocess({"id": "s", "audio": tone(1.0), "caller": "13700137000"}))
    assert rec.calls[-1]["hotwords"] == want


def test_separator_is_what_the_budget_counts():
    assert hotword_bytes(["甲", "乙"]) == len(f"甲{HOTWORD_SEPARATOR}乙".encode())
