"""training.intent_compare: the character model alone, the e5 head alone and the fused model, on a tiny fused model.

The e5 encoder is replaced by tests/test_intent_e5.py's stand-in (hashed character counts) and the real texts by a few
hand-made rows, so this runs in seconds and never touches the repository's embedding cache."""

from __future__ import annotations

import csv

import matplotlib

matplotlib.use("Agg")  # headless

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models.intent.e5_head import E5Embedder, E5Head, E5HeadConfig, FusedE5IntentModel  # noqa: E402
from models.intent.understand import LabelMaps  # noqa: E402
from test_intent_e5 import DIM, fake_vectors  # noqa: E402 - the e5 stand-in (hashed character counts)
from training.intent_compare import (  # noqa: E402
    TARGETS,
    VARIANTS,
    compare_intent_variants,
    comparison_table,
    metric_columns,
    plot_comparison,
)

LABELS = LabelMaps.from_taxonomy()
TOY = {
    "logistics_delay": ["快递一直没到"],
    "product_quality": ["热水器坏了不出热水"],
    "refund_dispute": ["退款一直不到账"],
    "billing_error": ["多扣了我一笔钱"],
    "service_attitude": ["客服态度太恶劣"],
    "repair_aftersales": ["师傅上门维修没修好"],
    "network_outage": ["家里宽带断网了"],
    "booking_issue": ["预约的时间被取消了"],
    "order_inquiry": ["查一下我的订单到哪了"],
    "consultation": ["请问怎么开发票"],
    "praise": ["谢谢你们服务很好"],
}
# (description, problem codes): A-H product faults, I-Q service; 3 product-only, 1 service-only, 1 mixed
CARS = [
    ("发动机异响，4S店不给修", "A24,"),
    ("变速箱顿挫严重", "B12,"),
    ("销售承诺的赠品没给", "K3,"),
    ("车漆起泡，售后推诿", "C5,L2,"),
    ("刹车失灵", "D7,"),
]
REVIEWS = [("送得太慢了，饭都凉了", 0), ("味道很好，下次还点", 1), ("少送了一份菜", 0), ("很快就送到了，谢谢", 1)]


@pytest.fixture
def fused(tmp_path):
    import torch

    from models.intent.charmodel import CharIntentModel, CharModelConfig

    texts = [t for ts in TOY.values() for t in ts]
    y = np.array([LABELS.intent_id(i) for i, ts in TOY.items() for _ in ts])
    emb = E5Embedder(tmp_path / "cache", encode=fake_vectors)
    head = E5Head(LABELS, E5HeadConfig(hidden=0, epochs=60, dropout=0.0, lr=5e-2), n_in=DIM, embedder=emb)
    head.fit(emb(texts), y)
    torch.manual_seed(0)
    char = CharIntentModel.create(texts, LABELS, CharModelConfig(embed_dim=8, conv_channels=8, hidden=8))
    return FusedE5IntentModel(char, head, weight=0.3)


@pytest.fixture
def realtext(tmp_path):
    cars, reviews = tmp_path / "cars.csv", tmp_path / "waimai.csv"
    with cars.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["问题简述", "典型问题"])
        w.writerows(CARS)
    with reviews.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "review"])
        w.writerows([(lab, text) for text, lab in REVIEWS])
    return cars, reviews


def test_rows_per_variant_match_the_models_own_predictions(fused, realtext):
    cars, reviews = realtext
    rows, counts = compare_intent_variants(fused, cars, reviews, waimai_per_label=None, heldout=True, heldout_n=22)
    assert [r["variant"] for r in rows] == list(VARIANTS)
    assert [r["w"] for r in rows] == [1.0, 0.0, 0.3]
    assert counts["car"] == len(CARS) and counts["car_product"] == 3 and counts["heldout"] == 22
    assert counts["waimai_negative"] == 2 and counts["waimai_positive"] == 2
    cols = metric_columns(rows)
    assert cols[:5] == ["car_called_complaint", "car_product_read_as_product", "waimai_complaint_f1",
                        "waimai_positive_called_complaint", "waimai_negative_called_complaint"]
    assert all(set(metric_columns([r])) == set(cols) for r in rows)
    by = {r["variant"]: r for r in rows}
    car_texts = [t for t, _ in CARS]
    # "char" is the character model on its own, "fused" the fused model as it predicts (fusion temperature 1 here)
    for name, model in (("char", fused.char), ("fused", fused)):
        preds = model.predict(car_texts)
        assert by[name]["car_called_complaint"] == pytest.approx(np.mean([u.is_complaint for u in preds]))
    # held-out slot F1 is the character model's in every row; intent accuracy is not shared
    for k in ("heldout_clean_slot_f1", "heldout_simnoise_slot_f1"):
        assert by["char"][k] == by["e5"][k] == by["fused"][k]
        assert 0.0 <= by["char"][k] <= 1.0
    from training.intent import heldout_split

    gold = heldout_split(22, 0)
    preds = fused.char.predict([u.text for u in gold])
    assert by["char"]["heldout_clean_intent_accuracy"] == pytest.approx(
        np.mean([p.intent == u.intent for p, u in zip(preds, gold)]))


def test_missing_files_leave_their_columns_out_and_car_sample_is_seeded(fused, realtext):
    cars, _ = realtext
    rows, counts = compare_intent_variants(fused, cars, None, max_car=3)
    assert metric_columns(rows) == ["car_called_complaint", "car_product_read_as_product"]
    assert counts == {"car": 3, "car_product": counts["car_product"]}
    again, _ = compare_intent_variants(fused, cars, None, max_car=3)
    assert again == rows


def test_table_and_plot(fused, realtext):
    cars, reviews = realtext
    rows, _ = compare_intent_variants(fused, cars, reviews, waimai_per_label=None)
    table = comparison_table(rows)
    assert [t["metric"] for t in table] == metric_columns(rows)
    t = {r["metric"]: r for r in table}
    assert t["car_called_complaint"]["target (issue 15)"] == TARGETS["car_called_complaint"]
    assert t["waimai_positive_called_complaint"]["better"] == "lower"
    neg = t["waimai_negative_called_complaint"]
    assert neg["target (issue 15)"] is None and neg["better"] == "higher" and neg["fused meets target"] is None
    pos = t["waimai_positive_called_complaint"]
    assert pos["fused meets target"] == (pos["fused"] <= TARGETS["waimai_positive_called_complaint"])
    ax = plot_comparison(rows)
    assert len(ax.patches) == len(rows) * len(table)
