"""The knowledge base (models/kb.py): sample articles load, search answers the right intent's articles, resolved
tickets join the index, and retrieval quality on held-out synthetic resolved tickets (recall@3: BM25 alone, e5
alone, fused) is printed and held above a floor. The fusion weight is chosen on the validation split only.

Run: ``OMP_NUM_THREADS=1 .venv/bin/pytest -s tests/test_kb.py`` (prints the recall table).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from models.kb import DEFAULT_FOLDER, E5_WEIGHT, KnowledgeBase, choose_weight, labelled_set, load_articles, recall_at
from models.taxonomy import DEFAULT_TAXONOMY


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


def test_sample_articles_cover_every_default_intent():
    arts = load_articles(DEFAULT_FOLDER)
    covered = {i for a in arts for i in a.intents}
    assert set(DEFAULT_TAXONOMY.intent_names) <= covered
    assert {"policy", "compensation", "script"} <= {a.kind for a in arts}
    assert any(a.source.endswith(".md") for a in arts)  # Markdown with front matter, beside YAML


def test_search_with_intent_and_cues(kb):
    hits = kb.search("快递一个星期了还没到，物流一直不更新", k=3, intent="logistics_delay")
    assert hits[0]["id"].startswith("logistics-delay")
    assert set(hits[0]) >= {"id", "title", "snippet", "score"}
    hits = kb.search("你们再不处理我就打12315，还要找你们领导", k=3)
    assert "complaint-escalation-script" in [h["id"] for h in hits]


def test_resolved_ticket_joins_the_index(kb):
    local = KnowledgeBase(kb.articles[:5])
    ticket = {"id": "T-1", "intent": "network_outage", "summary": "宽带断网三天，光猫亮红灯",
              "events": [{"type": "resolve", "data": {"resolution": "更换光猫后恢复，减免三天月租"}}]}
    art = local.add_ticket(ticket)
    assert art is not None and art.kind == "ticket" and "更换光猫" in art.body
    assert local.search("光猫亮红灯一直断网", k=1)[0]["id"] == "ticket:T-1"
    local.add_ticket({**ticket, "summary": "宽带断网三天，光猫亮红灯（复开）"})  # the same id replaces
    assert sum(a.id == "ticket:T-1" for a in local.articles) == 1


def test_recall_at_3_on_held_out_resolved_tickets(kb):
    items = labelled_set(kb=kb)
    val = [i for i in items if i["split"] == "validation"]
    test = [i for i in items if i["split"] == "test"]
    assert val and test and not {i["template_id"] for i in val} & {i["template_id"] for i in test}
    best, table = choose_weight(kb, val)
    assert best == E5_WEIGHT, f"the validation split now prefers e5 weight {best} ({table}); update models/kb.py"
    r = {m: recall_at(kb, test, 3, m) for m in ("bm25", "e5", "fused")}
    print(f"\nrecall@3 on {len(test)} held-out resolved-ticket texts ({len(val)} for validation; e5 weight {best}):")
    for m, v in r.items():
        print(f"  {m:6s} {v:.3f}")
    assert r["fused"] >= 0.7
    assert r["fused"] >= max(r["bm25"], r["e5"]) - 0.05
