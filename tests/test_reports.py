"""training.reports: error tables, real-text loaders and per-group rates on small hand-made inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from training.reports import (  # noqa: E402
    ALL,
    code_group,
    complaint_rate_by_group,
    confusion_pairs,
    examples_by_group,
    intent_distribution,
    intent_test_splits,
    latest_run,
    load_car_complaints,
    load_waimai_reviews,
    logged_confusion,
    plot_confusion,
    promotion_summary,
    worst_errors,
)


@dataclass(frozen=True)
class Pred:
    """The fields of models.intent.understand.Understanding that the reports read."""

    intent: str
    intent_confidence: float = 0.5
    slots: dict = None
    is_complaint: bool = False
    complaint_evidence: tuple = ()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_worst_errors_lowest_confidence_first():
    texts = ["a", "b", "c", "d", "e"]
    gold = ["x", "x", "y", "y", "z"]
    preds = [Pred("x", 0.9, {}), Pred("y", 0.8, {"phone": "13800138000"}), Pred("x", 0.4, {}),
             Pred("y", 0.3, {}), Pred("x", 0.6, {"order_id": "123456"})]
    rows = worst_errors(texts, gold, preds, k=2, gold_slots=[{}, {"phone": "13800138000"}, {}, {}, {}])
    assert [r["text"] for r in rows] == ["c", "e"]  # the wrong ones (b, c, e), least confident first
    assert rows[1] == {"text": "e", "true_intent": "z", "pred_intent": "x", "confidence": 0.6,
                       "pred_slots": {"order_id": "123456"}, "true_slots": {}}
    confident = worst_errors(texts, gold, preds, k=10, most_confident=True)
    assert [r["text"] for r in confident] == ["b", "e", "c"] and "true_slots" not in confident[0]
    assert worst_errors(texts, gold, preds, k=0) == []
    with pytest.raises(ValueError, match="lengths differ"):
        worst_errors(texts, gold[:-1], preds)


def test_confusion_pairs_counts_and_shares():
    gold = ["a", "a", "a", "a", "b", "b"]
    pred = ["a", "b", "b", "c", "a", "b"]
    assert confusion_pairs(gold, pred) == [
        {"true_intent": "a", "pred_intent": "b", "count": 2, "share_of_true": 0.5},
        {"true_intent": "a", "pred_intent": "c", "count": 1, "share_of_true": 0.25},
        {"true_intent": "b", "pred_intent": "a", "count": 1, "share_of_true": 0.5},
    ]
    assert confusion_pairs(gold, gold) == []


def test_plot_confusion_shows_row_shares():
    fig = plot_confusion(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b", "c"], title="test")
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 3)
    assert image[0].tolist() == [0.5, 0.5, 0.0] and image[1].tolist() == [0.0, 1.0, 0.0] and image[2].sum() == 0
    assert "accuracy 0.750 (n=4)" in ax.get_title()
    assert {t.get_text() for t in ax.texts} == {"0.50", "1.00"}  # zero cells stay blank
    counts = plot_confusion(["a", "a", "b"], ["a", "b", "b"], ["a", "b"], normalize=False)
    assert counts.axes[0].get_images()[0].get_array().tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="not one of the labels"):
        plot_confusion(["a"], ["zzz"], ["a", "b"])


@pytest.mark.parametrize("codes, group", [
    ("A24,D154,H103,", "product"), ("J300,O348,", "service"), ("H93,L314,", "mixed"), (["Q1"], "service"),
])
def test_code_group(codes, group):
    assert code_group(codes) == group


@pytest.mark.parametrize("codes", ["", ",", "Z12,", "A,", "a12"])
def test_code_group_rejects_bad_codes(codes):
    with pytest.raises(ValueError):
        code_group(codes)


def test_load_car_complaints(tmp_path):
    path = tmp_path / "cars.csv"
    path.write_text(
        ",id,投诉品牌,问题简述,典型问题\n"
        '0,1,甲,发动机异响,"A24,B3,"\n'
        '1,2,乙,4S店不给退订金,"K325,"\n'
        '2,3,丙,,"A1,"\n'
        '3,4,丁,变速箱顿挫 销售欺诈,"B95,M279,"\n', encoding="utf-8")
    rows = load_car_complaints(path)
    assert rows == [("发动机异响", "product", ("A24", "B3")), ("4S店不给退订金", "service", ("K325",)),
                    ("变速箱顿挫 销售欺诈", "mixed", ("B95", "M279"))]
    assert rows[0].text == "发动机异响" and rows[1].group == "service"
    path.write_text("问题简述,典型问题\n异响,\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2, column 典型问题"):
        load_car_complaints(path)
    path.write_text("text,codes\n异响,A1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        load_car_complaints(path)
    with pytest.raises(FileNotFoundError, match="realtext"):
        load_car_complaints(tmp_path / "missing.csv")


def test_load_waimai_reviews(tmp_path):
    path = tmp_path / "waimai.csv"
    lines = ["label,review"] + [f"1,好吃{i}" for i in range(5)] + [f"0,太慢了{i}" for i in range(3)] + ["0,  "]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = load_waimai_reviews(path)
    assert len(rows) == 8 and rows[0] == ("好吃0", "positive") and rows[-1] == ("太慢了2", "negative")
    sample = load_waimai_reviews(path, per_label=2, seed=1)
    assert [label for _, label in sample].count("positive") == 2 and [l for _, l in sample].count("negative") == 2
    assert sample == sorted(sample, key=rows.index)  # file order kept
    assert sample == load_waimai_reviews(path, per_label=2, seed=1)
    assert len(load_waimai_reviews(path, per_label=100)) == 8
    path.write_text("label,review\n2,好吃\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: label '2' is not 0 or 1"):
        load_waimai_reviews(path)


def test_complaint_rate_by_group():
    groups = ["product", "service", "product", "service", "product"]
    preds = [
        Pred("product_quality", 0.9, is_complaint=True, complaint_evidence=("intent:product_quality",)),
        Pred("consultation", 0.3, is_complaint=True, complaint_evidence=("cue:投诉",)),
        Pred("consultation", 0.5),
        Pred("service_attitude", 0.7, is_complaint=True, complaint_evidence=("intent:service_attitude", "cue:投诉")),
        Pred("praise", 0.2),
    ]
    rows = complaint_rate_by_group(groups, preds, order=["service", "product", "mixed"])
    by = {r["group"]: r for r in rows}
    assert [r["group"] for r in rows] == ["service", "product", "mixed", ALL]
    assert by["product"] == {"group": "product", "n": 3, "complaints": 1, "rate": round(1 / 3, 4), "by_intent": 1,
                             "by_cue_only": 0, "median_confidence": 0.5}
    assert by["service"] == {"group": "service", "n": 2, "complaints": 2, "rate": 1.0, "by_intent": 1,
                             "by_cue_only": 1, "median_confidence": 0.5}
    assert by[ALL]["n"] == 5 and by[ALL]["complaints"] == 3 and by[ALL]["rate"] == 0.6
    assert by[ALL]["median_confidence"] == 0.5
    assert by["mixed"]["n"] == 0 and math.isnan(by["mixed"]["rate"]) and math.isnan(by["mixed"]["median_confidence"])


def test_intent_distribution():
    rows = intent_distribution(["a", "a", "b", "a"], ["x", "y", "x", "x"], ["x", "y", "z"])
    assert rows == [
        {"group": "a", "n": 3, "x": round(2 / 3, 4), "y": round(1 / 3, 4), "z": 0.0},
        {"group": "b", "n": 1, "x": 1.0, "y": 0.0, "z": 0.0},
        {"group": ALL, "n": 4, "x": 0.75, "y": 0.25, "z": 0.0},
    ]
    with pytest.raises(ValueError, match="not among the labels"):
        intent_distribution(["a"], ["w"], ["x"])


def test_examples_by_group():
    texts = [f"t{i}" for i in range(6)]
    groups = ["a", "b", "a", "a", "b", "a"]
    preds = [Pred("x", 0.91234, {"phone": "1"}, True, ("cue:投诉", "cue:12315"))] * 6
    rows = examples_by_group(texts, groups, preds, per_group=2, seed=3)
    assert [r["group"] for r in rows] == ["a", "a", "b", "b"]
    assert all(groups[texts.index(r["text"])] == r["group"] for r in rows)
    assert rows[0]["confidence"] == 0.912 and rows[0]["evidence"] == "cue:投诉, cue:12315" and rows[0]["slots"] == {"phone": "1"}
    assert rows == examples_by_group(texts, groups, preds, per_group=2, seed=3)


def test_promotion_summary():
    tags = {"promotion.promoted": "true", "promotion.model_name": "intent", "promotion.version": "3",
            "promotion.reason": "val_score=0.9 beats champion version 2 (0.8)"}
    assert promotion_summary(tags) == "intent v3 promoted to @champion: val_score=0.9 beats champion version 2 (0.8)"
    assert "not promoted" in promotion_summary({**tags, "promotion.promoted": "false"})
    assert promotion_summary({}).startswith("not registered")


def test_latest_run_and_logged_confusion():
    """Against the test's own MLflow store (conftest): the newest run wins; a logged confusion matrix reads back."""
    import mlflow

    from training.tracking import experiment, log_confusion_matrix

    with pytest.raises(LookupError, match="no MLflow run in experiment 'reports-test'"):
        latest_run("reports-test")
    experiment("reports-test")
    with mlflow.start_run(run_name="old"):
        pass
    with mlflow.start_run(run_name="new") as run:
        log_confusion_matrix(["a", "b", "b"], ["a", "a", "b"], ["a", "b"], "test_confusion")
    found = latest_run("reports-test")
    assert found.info.run_id == run.info.run_id
    labels, counts = logged_confusion(run.info.run_id, "test_confusion")
    assert labels == ["a", "b"] and counts.tolist() == [[1, 0], [1, 1]]


def test_intent_test_splits_match_the_training_code():
    from training.config import CONFIG_ROOT
    from training.intent import generate_split

    splits = intent_test_splits(CONFIG_ROOT / "intent.yaml", ["data.n_test=22"])
    clean, noisy = splits["test"], splits["test_noisy"]
    assert [u.text for u in clean] == [u.text for u in generate_split("test", 22, 0)]
    assert len(noisy) == 22 and [u.intent for u in noisy] == [u.intent for u in clean]
    assert sum(a.text != b.text for a, b in zip(clean, noisy)) > 11  # the noised copy differs
