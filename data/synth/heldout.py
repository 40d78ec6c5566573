"""A fresh held-out intent and slot test set (issue 14), written apart from everything the models train on.

The old ``test`` split of :func:`data.synth.text.split_templates` is *the old test split*: the extra training
phrasings (:mod:`data.synth.extra_templates`) were written after studying a model's errors on it, and design
choices cited its numbers. It stays (other code reads ``test.jsonl``), but reported numbers come from this set.

What is held out (``heldout.yaml`` next to this file, checked by ``tests/test_heldout.py``):

- templates written new for this set, 4 per intent, none restating a core or extra template (character-trigram
  Jaccard below 0.35 against every one of them), each with Mandarin, Cantonese and Southwestern wording; Wu and
  Min are the Mandarin wording through the training generator's light word rules, as the generator does them;
- product names and brands that occur nowhere in the training lexicon or templates (方太热水器, 老板油烟机,
  科沃斯扫地机器人 ...), fillers and request phrases of its own;
- spoken amounts in each dialect's wording (十二蚊半, 兩個半, 五毫子, 三块五毛, 两角, 七块半), phone numbers after
  電話係 / 电话系 / 我電話 / 我手机是 / 联系电话, read with 幺 or 一 and 零.

:data:`FINGERPRINT` is the sha256 of the canonical JSON of ``heldout.yaml``; a test recomputes it, so any edit to
the set shows up in review. Never use this set for a decision (tuning rules, thresholds, model selection,
promotion): use validation, the selection split, or a dev list written for the purpose.

``python -m data.synth.heldout write OUT.jsonl [N] [SEED]`` writes the manifest; ``python -m data.synth.heldout
score-rules MANIFEST`` scores the model-free slot path (``fill_slots`` with the gold product span, ITN rules for
numbers) on it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

HELDOUT_FILE = Path(__file__).with_name("heldout.yaml")
# sha256 of canonical_json(load_spec()): tests/test_heldout.py recomputes it, so an edit of heldout.yaml shows here
FINGERPRINT = "e940ef3a6919fffd128d6bd8ab0c625e939cacb72cf3e54345f8e41979cb7740"
SPLIT = "heldout"
DIALECTS = ("mandarin", "cantonese", "southwestern", "wu", "min")
EXPLICIT_DIALECTS = ("mandarin", "cantonese", "southwestern")  # every template words these itself
_DIGIT_ZH = "零一二三四五六七八九"
_PUNCT = "，。！？、…；："
AMOUNT_RANGE = (2, 2000)  # whole yuan of a held-out sum


# -- the spec --------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_spec() -> dict:
    """The held-out templates, products and lexicon, as read from ``heldout.yaml``."""
    import yaml

    return yaml.safe_load(HELDOUT_FILE.read_text(encoding="utf-8"))


def canonical_json(spec: Any) -> str:
    """One text per content: sorted keys, no whitespace, characters as they are."""
    return json.dumps(spec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def fingerprint(spec: Any | None = None) -> str:
    """sha256 (hex) of :func:`canonical_json` of the spec (by default the shipped one)."""
    return hashlib.sha256(canonical_json(load_spec() if spec is None else spec).encode("utf-8")).hexdigest()


def heldout_products() -> list[tuple[str, str, str | None, str]]:
    """Every held-out product: (name, measure word, brand or None, category)."""
    return [(n, mw, b, cat) for cat, items in load_spec()["products"].items() for n, mw, b in items]


def heldout_fillers() -> list[str]:
    return sorted({f for entries in load_spec()["lexicon"]["fill"].values() for f in entries})


def template_ids(intent: str) -> list[str]:
    return [f"{SPLIT}/{intent}/{i:02d}" for i in range(len(load_spec()["templates"][intent]))]


# -- spoken values ---------------------------------------------------------------------------------
def speak_amount(yuan: int, jiao: int, rng: random.Random, dialect: str) -> str:
    """A held-out sum in the dialect's own words: 十二蚊半, 兩個半, 五毫子 (Cantonese); 三块五毛, 七块半, 两角
    (Mandarin, Wu, Min); 八块五角, 五角钱 (Southwestern)."""
    from data.synth.text import cardinal

    ys = cardinal(yuan, rng) if yuan else ""
    cj = cardinal(jiao, rng) if jiao else ""
    d = _DIGIT_ZH[jiao]
    if dialect == "cantonese":
        if not yuan:
            return rng.choice((f"{cj}毫", f"{cj}毫子"))
        if not jiao:
            return f"{ys}蚊"
        if jiao == 5:
            return rng.choice((f"{ys}蚊半", ys.replace("两", "兩") + "個半"))
        return f"{ys}蚊{d}"
    if dialect == "southwestern":
        if not yuan:
            return rng.choice((f"{cj}角钱", f"{cj}毛"))
        if not jiao:
            return rng.choice((f"{ys}块钱", f"{ys}块"))
        if jiao == 5:
            return rng.choice((f"{ys}块五", f"{ys}块五角"))
        return rng.choice((f"{ys}块{d}角", f"{ys}块{d}"))
    if not yuan:
        return rng.choice((f"{cj}毛", f"{cj}角", f"{cj}毛钱"))
    if not jiao:
        return rng.choice((f"{ys}块钱", f"{ys}元整", f"{ys}块"))
    if jiao == 5:
        return rng.choice((f"{ys}块五", f"{ys}块五毛", f"{ys}块半"))
    return rng.choice((f"{ys}块{d}", f"{ys}块{cj}毛", f"{ys}元{d}角"))


def _random_sum(rng: random.Random) -> tuple[int, int]:
    r = rng.random()
    if r < 0.1:
        return 0, rng.randint(1, 9)
    yuan = int(10 ** rng.uniform(0.3, 3.3))
    yuan = min(max(yuan, AMOUNT_RANGE[0]), AMOUNT_RANGE[1])
    r = rng.random()
    jiao = 0 if r < 0.45 else 5 if r < 0.8 else rng.randint(1, 9)
    return yuan, jiao


def _normalised(yuan: int, jiao: int) -> str:
    return f"{yuan}.{jiao}" if jiao else str(yuan)


def _read_phone(number: str, rng: random.Random, dialect: str) -> str:
    """Digit by digit: 幺 for 1 in most Mandarin-side readings, 一 (and now and then 幺) in Cantonese; 零 for 0."""
    yao = rng.random() < (0.1 if dialect == "cantonese" else 0.6)
    table = list(_DIGIT_ZH)
    if yao:
        table[1] = "幺"
    return "".join(table[int(c)] for c in number)


# -- rendering -------------------------------------------------------------------------------------
class _Renderer:
    def __init__(self, rng: random.Random, intent: str, dialect: str):
        from data.synth.text import random_order_id, random_phone

        self.rng, self.intent, self.dialect = rng, intent, dialect
        self.spec = load_spec()
        self.values: dict[str, str] = {}
        self.said: dict[str, str] = {}
        self.product_entry: tuple[str, str, str | None] | None = None
        self._phone, self._order = random_phone(rng), random_order_id(rng)

    def product(self, category: str | None) -> tuple[str, str, str | None]:
        if self.product_entry is None:
            cats = [category] if category else self.spec["intent_products"][self.intent]
            items = self.spec["products"][self.rng.choice(cats)]
            name, mw, brand = self.rng.choice(items)
            self.product_entry = (name, mw, brand)
            self.values["product"] = self.said["product"] = name
        return self.product_entry

    def slot(self, key: str, arg: str | None) -> str:
        if key == "product":
            return self.product(arg)[0]
        if key in self.said:
            return self.said[key]
        if key == "phone":
            self.values[key], said = self._phone, _read_phone(self._phone, self.rng, self.dialect)
        elif key == "order_id":
            yao = self.dialect != "cantonese" and self.rng.random() < 0.4
            said = "".join(("幺" if (c == "1" and yao) else _DIGIT_ZH[int(c)]) for c in self._order)
            self.values[key] = self._order
        elif key == "amount":
            yuan, jiao = _random_sum(self.rng)
            self.values[key], said = _normalised(yuan, jiao), speak_amount(yuan, jiao, self.rng, self.dialect)
        else:
            raise KeyError(key)
        self.said[key] = said
        return said

    def lex(self, key: str) -> tuple[str, bool]:
        """An entry of the held-out lexicon for this dialect, and whether it still needs the word rules."""
        table = self.spec["lexicon"][key]
        own = table.get(self.dialect)
        if own:
            return self.rng.choice(own), False
        return self.rng.choice(table["mandarin"]), self.dialect != "mandarin"

    def render(self, nodes: tuple, convert: bool) -> list[tuple[str, str | None, bool]]:
        from data.synth.text import _Alt, _Opt, _Ref, _Text, parse_template

        out: list[tuple[str, str | None, bool]] = []
        for n in nodes:
            if isinstance(n, _Text):
                out.append((n.text, None, convert))
            elif isinstance(n, _Opt):
                if self.rng.random() < n.p:
                    out += self.render(n.body, convert)
            elif isinstance(n, _Alt):
                out += self.render(self.rng.choice(n.options), convert)
            elif isinstance(n, _Ref):
                if n.key in ("product", "phone", "order_id", "amount"):
                    out.append((self.slot(n.key, n.arg), n.key, False))
                elif n.key == "mw":
                    out.append(("一" + self.product(None)[1], None, False))
                else:
                    entry, needs = self.lex(n.key)
                    out += self.render(parse_template(entry), needs or convert)
        return out


def _utterance(rng: random.Random, intent: str, dialect: str, index: int) -> dict:
    from data.synth.text import _Converter, parse_template

    spec = load_spec()
    template = spec["templates"][intent][index]
    r = _Renderer(rng, intent, dialect)
    own = template.get(dialect)
    convert = own is None and dialect != "mandarin"
    segs = r.render(parse_template(own or template["mandarin"]), convert)
    conv = _Converter(dialect) if dialect not in EXPLICIT_DIALECTS else None
    pieces: list[tuple[str, str | None]] = []
    for text, slot, needs in segs:
        if needs and conv is not None and slot is None:
            text = conv(text, rng)
        pieces.append((text, slot))
    pieces = _add_fillers(pieces, r, rng)
    pieces = _tidy(pieces)
    text, spans, pos = "", [], 0
    for t, slot in pieces:
        if slot:
            spans.append([slot, pos, pos + len(t)])
        text += t
        pos += len(t)
    slots = {s: r.values[s] for s, _, _ in spans}
    return {"text": text, "intent": intent, "slots": slots, "slot_spans": spans, "dialect": dialect,
            "template_id": f"{SPLIT}/{intent}/{index:02d}"}


def _add_fillers(pieces: list[tuple[str, str | None]], r: _Renderer, rng: random.Random) -> list:
    """A held-out filler at the start (sometimes) and after a comma (now and then), never inside a slot."""
    out = []
    for i, (text, slot) in enumerate(pieces):
        if slot is None:
            chars = []
            for k, c in enumerate(text):
                chars.append(c)
                if c == "，" and k + 1 < len(text) and rng.random() < 0.15:
                    chars.append(r.lex("fill")[0])
            text = "".join(chars)
        out.append((text, slot))
    if rng.random() < 0.2:
        out.insert(0, (r.lex("fill")[0], None))
    return out


def _tidy(pieces: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Merge text pieces, collapse doubled punctuation, end with a full stop (slot pieces untouched)."""
    merged: list[list] = []
    for text, slot in pieces:
        if not text:
            continue
        if merged and slot is None and merged[-1][1] is None:
            merged[-1][0] += text
        else:
            merged.append([text, slot])
    for m in merged:
        if m[1] is None:
            t = re.sub(r"[，、]+([。！？…])", r"\1", m[0])
            t = re.sub(r"([。！？])[，、。]+", r"\1", t)
            m[0] = re.sub(r"，{2,}", "，", t)
    if merged and merged[0][1] is None:
        merged[0][0] = merged[0][0].lstrip(_PUNCT)
    if not merged or merged[-1][1] is not None:
        merged.append(["。", None])
    elif merged[-1][0][-1] not in "。！？":
        merged[-1][0] = merged[-1][0].rstrip("，、…；：") + "。"
    return [(t, s) for t, s in merged if t]


def heldout_records(n: int = 2200, seed: int = 0) -> list[dict]:
    """``n`` held-out utterances in the manifest format (EVALUATION.md plus ``slot_spans``, ``split``, ``template_id``):
    intents in turn, dialects in turn within each intent, templates drawn at random; deterministic for ``seed``."""
    from models.taxonomy import DEFAULT_TAXONOMY

    spec = load_spec()
    intents = list(spec["templates"])
    rng = random.Random(f"heldout:{seed}")
    out = []
    for k in range(n):
        intent = intents[k % len(intents)]
        dialect = DIALECTS[(k // len(intents)) % len(DIALECTS)]
        index = rng.randrange(len(spec["templates"][intent]))
        rec = _utterance(rng, intent, dialect, index)
        out.append({"id": f"heldout-{seed}-{k:06d}", **rec, "is_complaint": DEFAULT_TAXONOMY.is_complaint(intent),
                    "split": SPLIT, "source": "hotline-heldout", "heldout_fingerprint": FINGERPRINT})
    return out


def write_heldout(path: str | Path, n: int = 2200, seed: int = 0) -> Path:
    """Write :func:`heldout_records` as JSON Lines (the manifest format other commands read) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in heldout_records(n, seed):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


# -- model-free measurement ------------------------------------------------------------------------
def training_products() -> tuple[str, ...]:
    """The product names of the training lexicon: the gazetteer a model trained on the synthetic corpus carries."""
    from data.synth import lexicon as L

    return tuple(sorted({name for items in L.PRODUCTS.values() for name, _ in items}))


def score_rule_slots(records: Sequence[dict], product_span: bool = True, **fill_kwargs) -> dict[str, float]:
    """Slot F1 (exact value, micro over slots, as ``training.intent.score``) and product exact match of the
    model-free slot path: ``fill_slots`` given the gold product span (an oracle tagger, confidence 1) when
    ``product_span``, and nothing else, so phone, order number and amount come from the ITN rules alone."""
    from models.intent.understand import LabelMaps, fill_slots

    slots = LabelMaps.from_taxonomy().slots
    gaz = {"product": training_products()}
    tp = fp = fn = 0
    prod_total = prod_hit = 0
    for r in records:
        spans = [(s, a, b, 1.0) for s, a, b in r["slot_spans"] if s == "product" and product_span]
        pred = fill_slots(r["text"], spans, slots, gaz, **fill_kwargs)[0]
        gold = r["slots"]
        tp += sum(gold.get(k) == v for k, v in pred.items())
        fp += sum(gold.get(k) != v for k, v in pred.items())
        fn += sum(pred.get(k) != v for k, v in gold.items())
        if "product" in gold:
            prod_total += 1
            prod_hit += pred.get("product") == gold["product"]
    per_slot: dict[str, float] = {}
    for name in ("phone", "order_id", "amount"):
        gold_n = [r for r in records if name in r["slots"]]
        if gold_n:
            hits = sum(fill_slots(r["text"], [], slots, gaz)[0].get(name) == r["slots"][name] for r in gold_n)
            per_slot[f"{name}_exact"] = hits / len(gold_n)
    return {"slot_f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
            "product_exact": prod_hit / prod_total if prod_total else 1.0, **per_slot,
            "records": float(len(records))}


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "write":
        n = int(args[2]) if len(args) > 2 else 2200
        seed = int(args[3]) if len(args) > 3 else 0
        print(write_heldout(args[1], n, seed), f"fingerprint {fingerprint()}")
        return 0
    if len(args) >= 2 and args[0] == "score-rules":
        records = [json.loads(line) for line in Path(args[1]).read_text(encoding="utf-8").splitlines() if line]
        for k, v in score_rule_slots(records).items():
            print(f"{k:<16}{v:.4f}")
        return 0
    print("usage: python -m data.synth.heldout write OUT.jsonl [N] [SEED] | score-rules MANIFEST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
