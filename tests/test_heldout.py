"""The held-out intent/slot test set (data/synth/heldout.py): its fingerprint, and that nothing in it is training data."""

from __future__ import annotations

import random
import re

import pytest

from data.synth import heldout as H
from data.synth import lexicon as L
from data.synth.extra_templates import EXTRA_TEMPLATES
from data.synth.text import TextGenerator
from models.intent.itn import amount, phone
from models.taxonomy import DIALECTS, INTENTS

PUNCT = re.compile(r"[\[\]，。？！、…；：\s]")
COMMON_WORD_BRANDS = {"老板"}  # 老板 (boss) is an everyday word in training text; the brand's products never are


def _trigrams(wording: str) -> set[str]:
    bare = re.sub(r"\{[^}]*\}|[\[\]，。？！、…]", "", wording)
    return {bare[i : i + 3] for i in range(len(bare) - 2)}


def _training_texts() -> list[str]:
    """Every piece of text the training generator can say: templates, lexicon entries, products, faults, agents."""
    out: list[str] = []
    for intent in INTENTS:
        for t in (*L.TEMPLATES[intent], *EXTRA_TEMPLATES.get(intent, ())):
            out += list(t.values())
    for table in (L.LEX, *L.DIALECT_LEX.values(), *L.AGENT_LEX.values()):
        for entries in table.values():
            groups = entries.values() if isinstance(entries, dict) else (entries,)
            for g in groups:
                out += [x for v in (g.values() if isinstance(g, dict) else (g,)) for x in v]
    out += [name for items in L.PRODUCTS.values() for name, _ in items]
    out += [d for ds in L.DEFECTS.values() for d in ds]
    out += [c for cs in L.AGENT_COMPANY.values() for c in cs]
    return out


@pytest.fixture(scope="module")
def training_blob() -> str:
    return "\n".join(PUNCT.sub("", t) for t in _training_texts())


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return H.heldout_records(330, seed=0)


def test_fingerprint_is_recorded():
    """Any edit to heldout.yaml changes the fingerprint: update FINGERPRINT in the same commit, visibly."""
    assert H.fingerprint() == H.FINGERPRINT
    assert len(H.FINGERPRINT) == 64


def test_every_intent_has_new_templates_in_every_explicit_dialect():
    spec = H.load_spec()
    assert set(spec["templates"]) == set(INTENTS)
    for intent, templates in spec["templates"].items():
        assert len(templates) >= 3, intent
        for t in templates:
            assert set(H.EXPLICIT_DIALECTS) <= set(t), (intent, t)


def test_no_heldout_template_restates_a_training_template():
    """The check tests/test_synth_text.py applies to extra templates, against every core and extra template,
    per dialect wording (a training template without its own wording of a dialect is compared by its Mandarin)."""
    gen = TextGenerator()
    training = []
    for intent in INTENTS:
        for tid in gen.template_ids(intent, extra=True):
            training.append((tid, gen.template(tid)))
    for intent, templates in H.load_spec()["templates"].items():
        for k, t in enumerate(templates):
            for dialect in H.EXPLICIT_DIALECTS:
                mine = _trigrams(t[dialect])
                for tid, other in training:
                    theirs = _trigrams(other.get(dialect) or other["mandarin"])
                    jaccard = len(mine & theirs) / len(mine | theirs)
                    assert jaccard < 0.35, f"heldout {intent}/{k} ({dialect}) restates {tid}: Jaccard {jaccard:.2f}"


def test_heldout_products_brands_and_fillers_are_absent_from_training(training_blob):
    for name, _, brand, _ in H.heldout_products():
        assert name not in training_blob, f"held-out product {name} occurs in the training lexicon"
        if brand and brand not in COMMON_WORD_BRANDS:
            assert brand not in training_blob, f"held-out brand {brand} occurs in the training lexicon"
    for filler in H.heldout_fillers():
        bare = PUNCT.sub("", filler)
        assert bare and bare not in training_blob, f"held-out filler {filler} occurs in the training lexicon"
    for key in ("h_ask", "c_phone", "c_order"):
        for entries in H.load_spec()["lexicon"][key].values():
            for e in entries:
                assert PUNCT.sub("", e) not in training_blob or len(PUNCT.sub("", e)) <= 4, e


def test_generated_training_text_never_says_a_heldout_product():
    gen = TextGenerator()
    rng = random.Random(0)
    names = [n for n, *_ in H.heldout_products()]
    for k in range(400):
        intent = INTENTS[k % len(INTENTS)]
        u = gen.utterance(rng, intent, "neutral", DIALECTS[k % len(DIALECTS)],
                          template_id=rng.choice(gen.template_ids(intent, extra=True)))
        assert not any(n in u.text for n in names), u.text


def test_records_are_manifest_records_with_consistent_spans(records):
    assert {r["intent"] for r in records} == set(INTENTS)
    assert {r["dialect"] for r in records} == set(DIALECTS)
    for r in records:
        assert r["split"] == "heldout" and r["heldout_fingerprint"] == H.FINGERPRINT
        assert set(r) >= {"id", "text", "intent", "is_complaint", "slots", "slot_spans", "dialect", "template_id"}
        assert not re.search(r"[A-Za-z0-9]", r["text"])
        assert {s for s, _, _ in r["slot_spans"]} == set(r["slots"])
        for s, a, b in r["slot_spans"]:
            said = r["text"][a:b]
            if s == "product":
                assert said == r["slots"][s]
            elif s == "phone":
                assert phone(said) == r["slots"][s]
            elif s == "amount":
                assert amount(said) == r["slots"][s], said
    assert H.heldout_records(30, seed=0) == records[:30]  # deterministic, and a prefix of a longer draw


def test_dialect_wordings_show_in_the_records(records):
    by = {d: "".join(r["text"] for r in records if r["dialect"] == d) for d in DIALECTS}
    assert all(m in by["cantonese"] for m in ("嘅", "唔", "咗", "冇", "係"))
    assert sum(m in by["southwestern"] for m in ("嘛", "噻", "啥子", "一哈")) >= 3
    assert any(m in by["wu"] for m in L.DIALECT_MARKERS["wu"]) and any(m in by["min"] for m in L.DIALECT_MARKERS["min"])
    spoken = "".join(r["text"][a:b] for r in records for s, a, b in r["slot_spans"] if s == "amount")
    assert "蚊" in spoken and ("毛" in spoken or "角" in spoken)


def test_spoken_amounts_per_dialect():
    rng = random.Random(3)
    seen = {H.speak_amount(546, 5, rng, "cantonese") for _ in range(40)}
    assert seen == {"五百四十六蚊半", "五百四十六個半"}
    assert {H.speak_amount(2, 5, rng, "cantonese") for _ in range(40)} == {"两蚊半", "兩個半"}
    for dialect in DIALECTS:
        for yuan, jiao in ((0, 5), (3, 5), (128, 0), (7, 2), (0, 2)):
            said = H.speak_amount(yuan, jiao, rng, dialect)
            assert amount(said) == H._normalised(yuan, jiao), (dialect, said)
