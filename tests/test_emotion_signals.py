"""Text signal, fusion and call trajectories/alerts on hand-made inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.emotion.fusion import FusionRule, compare, fit_fusion, fuse, macro_f1
from models.emotion.text_signal import LexiconTextSignal, NgramTextSignal, combine, read_weibo
from training.emotion import score_text
from models.emotion.trajectory import AlertOptions, SegmentScore, customer_segments, find_alerts, score_call, summarize
from models.taxonomy import EMOTIONS

IDX = {e: i for i, e in enumerate(EMOTIONS)}


def probs_of(**kw: float) -> dict[str, float]:
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return {e: kw.get(e, rest) for e in EMOTIONS}


def seg(start: float, end: float, **kw: float) -> SegmentScore:
    p = probs_of(**kw)
    return SegmentScore(start, end, max(p, key=p.get), p, 0.5)


# -- text signal ---------------------------------------------------------------------------------
def test_lexicon_finds_angry_and_anxious_wording():
    lex = LexiconTextSignal()
    p = lex.predict_proba(["你们太过分了，气死我了，我要投诉！", "我很着急，能不能马上帮我查一下，急死了", "好的，谢谢，我很满意", "我想查一下订单"])
    assert [EMOTIONS[k] for k in p.argmax(1)] == ["angry", "anxious", "happy", "neutral"]
    np.testing.assert_allclose(p.sum(1), 1.0)
    # a negated cue does not fire
    assert lex.cue_scores("我不生气")["angry"] == 0.0 and lex.cue_scores("我很生气")["angry"] > 0


def test_ngram_learns_wording_and_round_trips():
    texts = ["气死了你们", "太气人了你们", "急死了快点", "快点快点好急", "谢谢你们很好", "很好谢谢", "查一下订单", "订单在哪"]
    labels = ["angry", "angry", "anxious", "anxious", "happy", "happy", "neutral", "neutral"]
    ng = NgramTextSignal(min_count=1).fit(texts, labels)
    pred = [EMOTIONS[k] for k in ng.predict_proba(["真气死了", "好急快点", "谢谢"]).argmax(1)]
    assert pred == ["angry", "anxious", "happy"]
    again = NgramTextSignal.from_dict(json.loads(json.dumps(ng.to_dict())))
    np.testing.assert_allclose(again.predict_proba(texts), ng.predict_proba(texts), atol=1e-4)
    mixed = combine(LexiconTextSignal().predict_proba(texts), ng.predict_proba(texts))
    np.testing.assert_allclose(mixed.sum(1), 1.0)


def test_weibo_mapping_and_scoring(tmp_path):
    rows = [{"content": "气死了", "label": "angry"}, {"content": "好害怕", "label": "fear"},
            {"content": "天哪", "label": "surprise"}, {"content": "今天开会", "label": "neutral"}]
    path = tmp_path / "weibo.txt"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    texts, labels = read_weibo(path)
    assert labels == ["angry", "anxious", "neutral"] and len(texts) == 3  # fear -> anxious, surprise dropped
    s = score_text(LexiconTextSignal().predict_proba(texts), labels)
    assert s.macro_f1 == pytest.approx(1.0) and s.accuracy == pytest.approx(1.0)
    with pytest.raises(FileNotFoundError, match="weibo_path"):
        read_weibo(tmp_path / "missing.txt")


# -- fusion ----------------------------------------------------------------------------------------
def test_fusion_weight_is_chosen_on_validation():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, 400)
    onehot = np.eye(5)[gold]
    noise = rng.dirichlet(np.ones(5), 400)
    # audio is right on the first half, text on the second: fusing should beat both
    audio = np.where(np.arange(400)[:, None] < 200, 0.7 * onehot + 0.3 * noise, noise)
    text = np.where(np.arange(400)[:, None] >= 200, 0.6 * onehot + 0.4 * noise, 0.8 * noise + 0.2 / 5)
    rule = fit_fusion(audio, text, gold)
    assert 0.0 < rule.text_weight < 1.0
    m = compare(audio, text, gold, rule)
    assert m["fused_macro_f1"] > max(m["audio_macro_f1"], m["text_macro_f1"])
    np.testing.assert_allclose(fuse(audio, text, 0.0), audio / audio.sum(1, keepdims=True), atol=1e-6)
    assert macro_f1(np.eye(5)[gold], gold, 5) == 1.0
    with pytest.raises(ValueError, match="shape"):
        fuse(audio, text[:10], 0.5)
    # a useless text signal gets weight 0 (ties go to less text)
    useless = np.full_like(audio, 0.2)
    assert fit_fusion(audio, useless, gold).text_weight == 0.0
    assert isinstance(rule, FusionRule)


# -- trajectories and alerts -----------------------------------------------------------------------
def test_alert_needs_a_sustained_span():
    opts = AlertOptions(threshold=0.6, min_span_s=8.0, max_gap_s=5.0)
    calm = [seg(0, 3, neutral=0.9), seg(5, 8, neutral=0.8)]
    assert find_alerts(calm, opts) == []
    brief = calm + [seg(10, 14, angry=0.9), seg(16, 19, neutral=0.9)]
    assert find_alerts(brief, opts) == []  # 4 s of anger is not enough
    sustained = brief + [seg(20, 24, angry=0.7), seg(26, 29, angry=0.8), seg(30, 33, angry=0.95)]
    alerts = find_alerts(sustained, opts)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.emotion, a.start_s, a.end_s, a.peak) == ("angry", 20, 33, 0.95) and a.duration_s == 13
    # a long gap splits a span
    gapped = [seg(0, 5, anxious=0.8), seg(30, 35, anxious=0.8)]
    assert find_alerts(gapped, opts) == []
    assert len(find_alerts(gapped, AlertOptions(min_span_s=8.0, max_gap_s=60.0))) == 1
    # anxiety alerts too, and the threshold is configurable
    anx = [seg(0, 5, anxious=0.65), seg(6, 12, anxious=0.7)]
    assert [x.emotion for x in find_alerts(anx, opts)] == ["anxious"]
    assert find_alerts(anx, AlertOptions(threshold=0.75)) == []


def test_summarize_gives_peak_first_angry_and_trajectory():
    segs = [seg(0, 3, neutral=0.9), seg(5, 9, anxious=0.7), seg(10, 15, angry=0.8), seg(16, 25, angry=0.95)]
    ce = summarize(segs, AlertOptions(min_span_s=8.0))
    assert ce.first_angry_s == 10 and ce.peak is segs[3] and ce.peak_emotion == "angry"
    assert ce.alert and ce.alerts[0].start_s == 10
    assert ce.call_emotion == "angry"
    assert ce.trajectory["t"] == [1.5, 7.0, 12.5, 20.5] and len(ce.trajectory["angry"]) == 4
    empty = summarize([])
    assert empty.peak is None and not empty.alert and empty.first_angry_s is None


class _Loudness:
    """A stand-in classifier whose 'anger' is the clip's loudness: enough to test score_call's plumbing."""

    def classify_many(self, clips):
        from models.emotion.model import result

        out = []
        for c in clips:
            a = min(1.0, float(np.abs(c).max()) * 2)
            p = np.array([1 - a, a, 0, 0, 0]) * 0.96 + 0.01
            out.append(result(p, a, EMOTIONS))
        return out


def test_score_call_uses_customer_turns_and_skips_silence():
    sr = 16000
    audio = np.zeros(30 * sr, np.float32)
    rng = np.random.default_rng(0)
    audio[2 * sr : 5 * sr] = 0.05 * rng.standard_normal(3 * sr)  # calm
    audio[10 * sr : 30 * sr] = 0.45 * np.clip(rng.standard_normal(20 * sr), -1, 1)  # shouting
    turns = [{"speaker": "customer", "start_s": 2, "end_s": 5}, {"speaker": "agent", "start_s": 5, "end_s": 9},
             {"speaker": "customer", "start_s": 10, "end_s": 20}, {"speaker": "customer", "start_s": 21, "end_s": 30},
             {"speaker": "customer", "start_s": 6, "end_s": 8}]  # a silent customer turn: skipped
    ce = score_call(_Loudness(), audio, turns, AlertOptions(min_span_s=10.0))
    assert [(s.start_s, s.end_s) for s in ce.segments] == [(2, 5), (10, 20), (21, 30)]
    assert ce.first_angry_s == 10 and ce.alert
    windows = customer_segments(None, 10.0)
    assert windows[0] == (0.0, 4.0) and windows[-1][1] == 10.0


def test_recall_bias_reaches_the_target_with_the_smallest_bias():
    from models.emotion.fusion import fit_recall_bias, with_bias

    rng = np.random.default_rng(1)
    gold = rng.integers(0, 5, 500)
    probs = rng.dirichlet(np.ones(5), 500) * 0.5 + 0.5 * np.eye(5)[gold] * rng.uniform(0, 1, (500, 1))
    angry = IDX["angry"]
    b = fit_recall_bias(probs, gold, angry, 0.95)
    recall = lambda p: np.mean(np.argmax(p[gold == angry], 1) == angry)  # noqa: E731
    assert recall(with_bias(probs, angry, b)) >= 0.95
    assert b == 0.0 or recall(with_bias(probs, angry, b - 0.1)) < 0.95
    assert fit_recall_bias(probs, np.zeros(500, int), angry, 0.95) == 0.0  # no angry examples: no bias
