"""Complaint hotspots (models/hotspots.py): a burst raises a spike alert by the stated one-sided Poisson test with a
Bonferroni correction; the same volume spread evenly does not; a first ticket of a new key does not; window parsing,
boundaries and repeat complainants."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from models.hotspots import hotspots, parse_window

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
PRODUCTS = ["空调", "冰箱", "洗衣机", "手机", "电视"]
REGIONS = ["杭州", "广州", "成都", "上海"]
INTENTS = ["product_quality", "logistics_delay", "refund_dispute", "billing_error"]


def ticket(at, product=None, *, intent=None, region=None, caller=None, complaint=True, rng=None):
    rng = rng or random.Random(0)
    return {"created_at": at, "intent": intent or rng.choice(INTENTS), "is_complaint": complaint,
            "product": product, "region": region or rng.choice(REGIONS),
            "caller": caller or f"139{rng.randrange(10**8):08d}"}


def background(rng, per_window=8, windows=7):
    """Steady complaints over the current and the 6 previous hourly windows, spread over products."""
    out = []
    for i in range(windows):
        for _ in range(per_window):
            at = NOW - i * H - timedelta(seconds=rng.uniform(1, 3599))
            out.append(ticket(at, rng.choice(PRODUCTS), rng=rng))
    return out


def test_a_burst_of_one_products_complaints_in_the_last_window_raises_an_alert():
    rng = random.Random(1)
    burst = [ticket(NOW - timedelta(minutes=rng.uniform(1, 59)), "热水器", rng=rng) for _ in range(14)]
    report = hotspots(background(rng) + burst, now=NOW, window="1h", history=6)
    alerted = {(a.dimension, a.key) for a in report.alerts}
    assert ("product", "热水器") in alerted
    a = next(a for a in report.alerts if a.key == "热水器")
    assert a.count == 14 and a.baseline == 0.5 and a.p_value < 1e-10
    assert a.test.startswith("poisson one-sided, Bonferroni m=") and f"m={report.tested}" in a.test
    assert report.counts["product"]["热水器"] == 14 and list(report.counts["product"])[0] == "热水器"
    assert not any(a.dimension == "product" and a.key in PRODUCTS for a in report.alerts)
    assert (report.window, report.start, report.end) == ("1h", NOW - H, NOW)


def test_the_same_volume_spread_evenly_over_the_windows_does_not_alert():
    rng = random.Random(1)
    spread = [ticket(NOW - i * H - timedelta(minutes=rng.uniform(1, 59)), "热水器", rng=rng)
              for i in range(7) for _ in range(2)]  # the burst's 14, two per window
    report = hotspots(background(rng) + spread, now=NOW, window="1h", history=6)
    assert report.alerts == ()
    assert report.counts["product"]["热水器"] == 2 and report.baselines["product"]["热水器"] == 2.0


def test_a_key_with_no_history_and_a_single_ticket_does_not_alert_even_with_min_count_1():
    rng = random.Random(2)
    report = hotspots(background(rng) + [ticket(NOW - timedelta(minutes=5), "吸尘器", rng=rng)], now=NOW,
                      min_count=1)
    assert not any(a.key == "吸尘器" for a in report.alerts)
    assert report.counts["product"]["吸尘器"] == 1
    assert report.baselines["product"]["吸尘器"] == 0.5  # the floor


def test_intent_and_region_spikes_are_tested_too():
    rng = random.Random(3)
    burst = [ticket(NOW - timedelta(minutes=rng.uniform(1, 59)), "空调", intent="network_outage", region="拉萨",
                    rng=rng) for _ in range(10)]
    report = hotspots(background(rng) + burst, now=NOW)
    alerted = {(a.dimension, a.key) for a in report.alerts}
    assert {("intent", "network_outage"), ("region", "拉萨")} <= alerted


def test_non_complaints_and_tickets_outside_the_span_are_not_counted():
    rng = random.Random(4)
    items = [ticket(NOW - timedelta(minutes=5), "热水器", complaint=False, rng=rng) for _ in range(20)]
    items += [ticket(NOW - 7 * H - timedelta(minutes=1), "热水器", rng=rng)]  # before the 6 previous windows
    items += [ticket(NOW + timedelta(minutes=1), "热水器", rng=rng)]  # in the future
    report = hotspots(items, now=NOW)
    assert report.counts["product"] == {} and report.alerts == () and report.tested == 0


def test_window_boundaries_are_half_open():
    items = [ticket(NOW - H, "空调"), ticket(NOW - H - timedelta(microseconds=1), "冰箱"),
             ticket(NOW - 7 * H, "电视")]
    report = hotspots(items, now=NOW, history=6)
    assert report.counts["product"] == {"空调": 1}  # [now - 1h, now)
    assert report.baselines["product"]["冰箱"] == 0.5 and report.baselines["product"]["电视"] == 0.5  # 1/6 < floor


def test_product_and_region_from_the_ticket_schema_fields():
    t = {"created_at": NOW - timedelta(minutes=1), "intent": "product_quality", "is_complaint": True,
         "slots": {"product": "空调"}, "customer": {"region": "杭州"}, "caller": "13900000000"}
    report = hotspots([t], now=NOW)
    assert report.counts == {"intent": {"product_quality": 1}, "product": {"空调": 1}, "region": {"杭州": 1}}


def test_repeat_complainants_are_listed_most_first():
    rng = random.Random(5)
    items = background(rng)
    items += [ticket(NOW - i * H - timedelta(minutes=3), "空调", caller="13800000001") for i in range(3)]
    items += [ticket(NOW - timedelta(minutes=9), "冰箱", caller="13800000002"),
              ticket(NOW - 5 * H, "冰箱", caller="13800000002"),
              ticket(NOW - timedelta(minutes=9), "冰箱", caller="13800000003", complaint=False),
              ticket(NOW - timedelta(minutes=8), "冰箱", caller="13800000003")]
    report = hotspots(items, now=NOW)
    assert report.repeat_complainants[:2] == (("13800000001", 3), ("13800000002", 2))
    assert "13800000003" not in dict(report.repeat_complainants)
    d = report.to_dict()
    assert d["repeat_complainants"][0] == {"caller": "13800000001", "complaints": 3}
    assert d["start"] == (NOW - H).isoformat()


def test_windows_parse_with_a_clear_error():
    assert parse_window("1h") == H and parse_window("30m") == parse_window("30min") == timedelta(minutes=30)
    assert parse_window("1d") == timedelta(days=1) and parse_window(" 2 W ") == timedelta(weeks=2)
    assert parse_window("1.5h") == timedelta(minutes=90) and parse_window(H) == H
    for bad in ("", "1", "h", "1y", "-1h", "0h", "one hour"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)
    report = hotspots([], now=NOW, window="1d")
    assert report.window == "1d" and report.start == NOW - timedelta(days=1)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="aware"):
        hotspots([], now=datetime(2026, 12, 1, 12))
    with pytest.raises(ValueError, match="ticket 0: created_at must be an aware datetime"):
        hotspots([ticket(datetime(2026, 12, 1, 11, 30), "空调")], now=NOW)
    with pytest.raises(ValueError, match="history"):
        hotspots([], now=NOW, history=0)
    with pytest.raises(ValueError, match="dimensions"):
        hotspots([], now=NOW, dimensions=("colour",))
