"""``hotline train intent``: train, calibrate, evaluate, log and register the intent + slot model.

    hotline train intent --config training/configs/intent.yaml [key=value ...]
    python -m training.intent --config training/configs/intent_hf.yaml model.pretrained=/path/to/bert

Steps of :func:`main`:
 1. parse arguments and compose the config
 2. seed everything
 3. data: generate text utterances from ``data/synth/text.py`` on held-out template splits (or read
    ``<data.corpus_dir>/{train,validation,test}.jsonl``); training only: the extra training-only phrasings
    (``data.extra_templates``), clause-spliced and keyword-swapped copies; mix clean and ASR-noised text
 4. model: the backend ``model.backend`` names (``char``: from scratch; ``hf``: fine-tune an encoder)
 5. fit with ``training/loop.py`` (early stopping on the validation score)
 6. calibrate: the char model's expert weights (``calibration.expert_weights: grid``, validation accuracy),
    then temperature scaling on validation logits; ECE before/after
 6b. refit (``refit.enabled``, off by default): a fresh model trained on the train *and* validation templates for
    the step count early stopping kept, with the expert weights and temperature chosen in 6. With
    ``refit.members`` K > 1, K such models (seeds ``trainer.seed`` + k) and their average is that model
 7. evaluate on the test split, clean and ASR-noised: intent accuracy and macro-F1, slot F1, ticket
    completeness, complaint F1, ECE (aggregate scores only: no test error is logged or printed)
 8. log plots (confusion matrix, per-class F1) and the worst-errors table, all on validation
 9. save the model directory and log it as the run's ``model`` artifact
10. register it and promote it to ``@champion`` if its promote metric beats the champion's

The registry promotes the model it compares. The compared score is always the registered model's own, on
templates it did not train on:

- without refit (the default) the registered model is stage one's, and it is compared on its validation score
  (``val_score``). Validation chose its early-stopping step, expert weights and temperature, so the figure is a
  little optimistic, but it is that model's, and the test split is never used for a decision;
- the refit model trains on validation too, so its validation score means nothing. Refit therefore needs a
  *selection* split (``data.selection_templates`` > 0: that many core training templates per intent, held out from
  stage one *and* the refit): the refit model is scored there and registered with ``sel_score``
  (``evaluation.promote_metric`` with ``val_`` read as ``sel_``); stage one's selection score is logged as
  ``stage1_sel_*`` beside it. Refit stays opt-in because the selection split costs training templates; the
  earlier default (registering the refit while comparing stage one's validation score) compared one model and
  registered another.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from data.asr_noise import AsrNoiseOptions, add_asr_noise
from models.calibration import (
    DEFAULT_ECE_BINS,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from models.intent.understand import Example, LabelMaps, Understanding, char_tags, understand
from models.taxonomy import DEFAULT_TAXONOMY, DIALECTS, Taxonomy
from training.config import CONFIG_ROOT, ConfigDict, ConfigError, to_dataclass

DEFAULT_CONFIG = CONFIG_ROOT / "intent.yaml"
REPO_ROOT = CONFIG_ROOT.parent.parent
SPLITS = ("train", "validation", "test")
MODEL_ARTIFACT = "model"  # the run's artifact folder holding the saved model directory


# -- config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntentDataConfig:
    corpus_dir: str | None = None  # folder with {train,validation,test}.jsonl; None = generate text
    n_train: int = 10000  # generated training utterances
    n_validation: int = 2000  # generated validation utterances
    n_test: int = 2000  # generated test utterances
    seed: int = 0  # template split and utterance draws
    noise_prob: float = 0.5  # share of training/validation utterances given simulated ASR errors
    clause_splice: float = 0.5  # training only: share of utterances that also give a clause-spliced copy
    noise: AsrNoiseOptions = field(default_factory=AsrNoiseOptions)  # the simulated ASR errors (validation, test)
    train_noise: AsrNoiseOptions | None = None  # training only: the simulated ASR errors there (None: ``noise``)
    keyword_swap: float = 0.4  # training only: share of utterances that also give a copy with intent keywords swapped
    extra_templates: bool = True  # training only: also draw from data/synth/extra_templates.py (always "train")
    selection_templates: int = 0  # core training templates per intent held out as the selection split (refit needs it)
    n_selection: int = 1000  # generated selection utterances (with selection_templates > 0)
    n_heldout: int = 2200  # utterances of the fresh held-out set (data/synth/heldout.py): reported, never decides
    heldout_seed: int = 0  # its draw
    batch_size: int = 64  # training batch size


@dataclass(frozen=True)
class CalibrationConfig:
    method: Literal["lbfgs", "grid"] = "lbfgs"  # how the temperature is fitted
    ece_bins: int = DEFAULT_ECE_BINS  # bins of the expected calibration error
    expert_weights: Literal["fixed", "grid"] = "grid"  # char model: keep the configured expert weights, or pick them on validation
    expert_grid: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)  # candidate weights per expert for "grid"


@dataclass(frozen=True)
class EvaluationConfig:
    noise_seed: int = 1234  # seed of the ASR-noised copy of the test split
    worst_errors: int = 100  # rows in the worst-errors table
    promote_metric: str = "val_score"  # validation metric the registry compares with the champion's


@dataclass(frozen=True)
class RefitConfig:
    enabled: bool = False  # after calibration, train a fresh model on train + validation templates (one process
    # only); needs data.selection_templates > 0: the refit model is scored and compared on the selection split
    step_scale: Literal["data", "same"] = "data"  # refit steps: the kept step count scaled by the data size, or the same
    members: int = 1  # refit models trained (seeds trainer.seed, +1, ...); > 1: their average is tested and registered


# -- data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Labelled:
    """One utterance with its labels."""

    text: str
    intent: str
    slots: dict[str, str]  # gold slot values (EVALUATION.md normalised)
    spans: tuple[tuple[str, int, int], ...] | None  # gold slot spans in ``text``; None when unknown
    is_complaint: bool
    template_id: str | None = None  # generated text: the template (held-out split unit)


def _noised(u: Labelled, rng: random.Random, options: AsrNoiseOptions) -> Labelled:
    noisy = add_asr_noise(u.text, u.spans or (), rng, options)
    spans = tuple(noisy.spans) if u.spans is not None else None
    return Labelled(noisy.text, u.intent, u.slots, spans, u.is_complaint, u.template_id)


def mix_noise(data: Sequence[Labelled], prob: float, options: AsrNoiseOptions, seed: int) -> list[Labelled]:
    """``data`` with a share ``prob`` of utterances replaced by ASR-noised versions (deterministic for ``seed``)."""
    rng = random.Random(seed)
    out = []
    for u in data:
        out.append(_noised(u, rng, options) if rng.random() < prob else u)
    return out


_CLAUSE_END = re.compile(r"[，。！？；…,.!?;]+")


def _clause_cuts(text: str, spans: Sequence[Sequence]) -> list[int]:
    """Offsets just after each clause-ending punctuation run that no span straddles (0 and len excluded)."""
    cuts = [m.end() for m in _CLAUSE_END.finditer(text) if 0 < m.end() < len(text)]
    return [c for c in cuts if not any(s[1] < c < s[2] for s in spans)]


def splice_clauses(data: Sequence[Labelled], prob: float, seed: int) -> list[Labelled]:
    """``data`` plus, for a share ``prob`` of it, new utterances spliced at clause boundaries from two
    utterances of the same intent (the head of one, the tail of another), spans carried over.

    Templates differ mostly in their clauses; recombining them shows the model more phrasings of an intent
    than the training templates alone, which helps on the held-out templates."""
    rng = random.Random(seed)
    by_intent: dict[str, list[Labelled]] = {}
    for u in data:
        if u.spans is not None:
            by_intent.setdefault(u.intent, []).append(u)
    out = list(data)
    for u in data:
        if u.spans is None or rng.random() >= prob:
            continue
        other = rng.choice(by_intent[u.intent])
        head_cuts, tail_cuts = _clause_cuts(u.text, u.spans), _clause_cuts(other.text, other.spans or ())
        if not head_cuts or not tail_cuts:
            continue
        a, b = rng.choice(head_cuts), rng.choice([0, *tail_cuts])
        head = [s for s in u.spans if s[2] <= a]
        tail = [(s[0], s[1] - b + a, s[2] - b + a) for s in other.spans or () if s[1] >= b]
        spans = head + tail
        slots = {s[0]: (u.slots if s[1] < a else other.slots).get(s[0], "") for s in spans}
        out.append(Labelled(u.text[:a] + other.text[b:], u.intent, slots, tuple(spans), u.is_complaint, u.template_id))
    return out


def swap_keywords(data: Sequence[Labelled], prob: float, seed: int, keywords=None) -> list[Labelled]:
    """``data`` plus, for a share ``prob`` of it, a copy whose keywords of its own intent
    (``models/intent/keywords.yaml``) are each replaced by another keyword of that intent, spans shifted.

    The keyword lists say what an intent is about in words the training templates may never use; putting
    them into training sentences teaches the character experts that any of them is evidence for the intent."""
    from models.intent.keywords import IntentKeywords

    kw = keywords if keywords is not None else IntentKeywords.load()
    rng = random.Random(seed)
    pools = {i: [w for w in words if not w.isascii()] for i, words in kw.keywords.items()}
    out = list(data)
    for u in data:
        pool = pools.get(u.intent)
        if u.spans is None or not pool or rng.random() >= prob:
            continue
        spans = [list(s) for s in u.spans]
        pieces, pos, changed = [], 0, False
        for m in kw.matches(u.text):
            if u.intent not in m.intents or any(s[1] < m.end and m.start < s[2] for s in u.spans) or rng.random() < 0.3:
                continue
            new = rng.choice(pool)
            pieces += [u.text[pos:m.start], new]
            shift = len(new) - (m.end - m.start)
            for s in spans:  # spans after the match move with it
                if s[1] >= m.end:
                    s[1] += shift
                    s[2] += shift
            pos, changed = m.end, True
        if not changed:
            continue
        text = "".join(pieces) + u.text[pos:]
        out.append(Labelled(text, u.intent, u.slots, tuple(tuple(s) for s in spans), u.is_complaint, u.template_id))
    return out


def augment_for_training(clean: Sequence[Labelled], cfg: IntentDataConfig) -> list[Labelled]:
    """The training set made from clean utterances: clause-spliced and keyword-swapped copies, then a noised share."""
    spliced = splice_clauses(clean, cfg.clause_splice, seed=cfg.seed + 3)
    if cfg.keyword_swap > 0:
        spliced = swap_keywords(spliced, cfg.keyword_swap, seed=cfg.seed + 4)
    return mix_noise(spliced, cfg.noise_prob, cfg.train_noise or cfg.noise, seed=cfg.seed + 1)


def template_splits(gen, seed: int, selection_templates: int = 0) -> dict[str, str]:
    """template id -> split: ``data.synth.text.split_templates``, then ``selection_templates`` of each intent's core
    training templates (drawn with ``seed``) become ``"selection"``; validation and test stay as they were."""
    from data.synth.text import split_templates

    out = split_templates(gen, seed)
    if selection_templates <= 0:
        return out
    for intent in gen.taxonomy.intent_names:
        core = [t for t in gen.template_ids(intent) if out[t] == "train"]
        if len(core) <= selection_templates:
            raise ConfigError(f"data.selection_templates={selection_templates}: intent {intent} has only {len(core)} "
                              "core training templates, and training needs at least one")
        for t in random.Random(f"selection:{seed}:{intent}").sample(core, selection_templates):
            out[t] = "selection"
    return out


def generate_split(split: str, n: int, seed: int, taxonomy: Taxonomy = DEFAULT_TAXONOMY,
                   extra_templates: bool = False, selection_templates: int = 0) -> list[Labelled]:
    """``n`` utterances from the templates of ``split`` (held out from the others), evenly over intents.

    ``extra_templates``: the training split also draws from the training-only phrasings of
    :mod:`data.synth.extra_templates`; validation and test are the same either way. ``selection_templates``: that
    many core training templates per intent form the ``"selection"`` split instead (:func:`template_splits`).
    """
    from tqdm import tqdm

    from data.synth.text import TextGenerator

    gen = TextGenerator()
    template_split = template_splits(gen, seed, selection_templates)
    rng = random.Random(f"{seed}-{split}")
    intents = taxonomy.intent_names
    templates = {i: [t for t in gen.template_ids(i, extra=extra_templates) if template_split.get(t) == split]
                 for i in intents}
    empty = [i for i, t in templates.items() if not t]
    if empty:
        raise ValueError(f"the {split} template split has no templates for intents {empty}; check split_templates")
    out: list[Labelled] = []
    for k in tqdm(range(n), desc=f"generate {split}", unit="utt", leave=False, mininterval=1.0):
        intent = intents[k % len(intents)]
        weights = gen.emotion_weights(intent)
        emotion = rng.choices(list(weights), weights=list(weights.values()))[0]
        dialect = rng.choice(DIALECTS)
        u = gen.utterance(rng, intent, emotion, dialect, template_id=rng.choice(templates[intent]))
        spans = tuple((s, int(a), int(b)) for s, a, b, *_ in u.slot_spans)
        out.append(Labelled(u.text, u.intent, dict(u.slots), spans, taxonomy.is_complaint(u.intent), u.template_id))
    rng.shuffle(out)
    return out


def read_split(corpus_dir: str | Path, split: str, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> list[Labelled]:
    """The records of ``<corpus_dir>/<split>.jsonl`` that have ``text`` and ``intent``."""
    from training.features import read_split_manifest

    path = Path(corpus_dir) / f"{split}.jsonl"
    m = read_split_manifest(path, "intent", "data.corpus_dir must hold train.jsonl, validation.jsonl and test.jsonl "
                            f"(build one with `hotline data synth --out {corpus_dir}`), or set data.corpus_dir=null "
                            "to generate text", taxonomy=taxonomy)
    out = []
    for r in m.records:
        if not r.get("text") or not r.get("intent"):
            continue
        slots = {k: str(v) for k, v in (r.get("slots") or {}).items() if v not in (None, "")}
        spans = r.get("slot_spans")
        spans = tuple((str(s[0]), int(s[1]), int(s[2])) for s in spans) if spans is not None else None
        is_complaint = bool(r.get("is_complaint", taxonomy.is_complaint(r["intent"])))
        out.append(Labelled(r["text"], r["intent"], slots, spans, is_complaint))
    if not out:
        raise ValueError(f"{path} has no records with both 'text' and 'intent': nothing to train or score on")
    return out


def load_data(cfg: IntentDataConfig) -> dict[str, list[Labelled]]:
    """Clean train/validation/test utterances (generated or read from ``cfg.corpus_dir``), and ``selection`` when
    ``cfg.selection_templates`` > 0 (generated) or the corpus has ``selection.jsonl``."""
    if cfg.corpus_dir:
        corpus = Path(cfg.corpus_dir)
        if not corpus.is_absolute() and not corpus.exists():
            corpus = REPO_ROOT / corpus  # relative to the repository, wherever the command runs
        out = {s: read_split(corpus, s) for s in SPLITS}
        if (corpus / "selection.jsonl").is_file():
            out["selection"] = read_split(corpus, "selection")
    else:
        sizes = {"train": cfg.n_train, "validation": cfg.n_validation, "test": cfg.n_test,
                 "selection": cfg.n_selection}
        splits = SPLITS + (("selection",) if cfg.selection_templates > 0 else ())
        out = {s: generate_split(s, sizes[s], cfg.seed, extra_templates=cfg.extra_templates,
                                 selection_templates=cfg.selection_templates) for s in splits}
    if cfg.n_heldout > 0:
        out["heldout"] = heldout_split(cfg.n_heldout, cfg.heldout_seed)
    return out


def heldout_split(n: int, seed: int) -> list[Labelled]:
    """The fresh held-out set (data/synth/heldout.py: templates, products and fillers absent from training). It is
    scored once per run and reported; nothing (early stopping, calibration, grids, promotion) reads it."""
    from data.synth.heldout import heldout_records

    return [Labelled(r["text"], r["intent"], r["slots"], tuple(tuple(s) for s in r["slot_spans"]), r["is_complaint"],
                     r.get("template_id")) for r in heldout_records(n, seed)]


def build_gazetteer(data: Sequence[Labelled]) -> dict[str, tuple[str, ...]]:
    """Known values of the text slots (those whose values are not digit strings, i.e. products) in ``data``."""
    values: dict[str, set[str]] = {}
    for u in data:
        for k, v in u.slots.items():
            values.setdefault(k, set()).add(v)
    return {k: tuple(sorted(v)) for k, v in values.items() if not all(x.replace(".", "").isdigit() for x in v)}


def to_examples(data: Sequence[Labelled], labels: LabelMaps) -> list[Example]:
    return [
        Example(
            u.text,
            labels.intent_id(u.intent),
            tuple(char_tags(u.text, u.spans, labels.bio_tags)) if u.spans is not None else None,
        )
        for u in data
    ]


# -- metrics ---------------------------------------------------------------------------------------
def score(
    preds: Sequence[Understanding], gold: Sequence[Labelled], labels: LabelMaps, ece_bins: int = DEFAULT_ECE_BINS
) -> dict[str, float]:
    """Intent accuracy and macro-F1, slot F1 (exact value, micro over slots), ticket completeness, complaint F1, ECE."""
    from training.tracking import per_class_f1

    if len(preds) != len(gold):
        raise ValueError(f"{len(preds)} predictions for {len(gold)} gold utterances")
    if not gold:
        return {}
    y_true = [g.intent for g in gold]
    y_pred = [p.intent for p in preds]
    f1 = per_class_f1(y_true, y_pred, labels.intents)
    present = set(y_true) | set(y_pred)
    tp = fp = fn = filled = 0
    for p, g in zip(preds, gold):
        for slot, value in p.slots.items():
            if g.slots.get(slot) == value:
                tp += 1
            else:
                fp += 1
        for slot, value in g.slots.items():
            if p.slots.get(slot) != value:
                fn += 1
            else:
                filled += 1
    n_gold_slots = sum(len(g.slots) for g in gold)
    c_tp = sum(p.is_complaint and g.is_complaint for p, g in zip(preds, gold))
    c_fp = sum(p.is_complaint and not g.is_complaint for p, g in zip(preds, gold))
    c_fn = sum(g.is_complaint and not p.is_complaint for p, g in zip(preds, gold))
    probs = np.array([[p.intent_probs[i] for i in labels.intents] for p in preds])
    return {
        "intent_accuracy": float(np.mean([a == b for a, b in zip(y_true, y_pred)])),
        "intent_macro_f1": float(np.mean([f1[i] for i in labels.intents if i in present])),
        "slot_f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
        "ticket_completeness": filled / n_gold_slots if n_gold_slots else 1.0,
        "complaint_f1": 2 * c_tp / (2 * c_tp + c_fp + c_fn) if (c_tp + c_fp + c_fn) else 1.0,
        "ece": expected_calibration_error(probs, [labels.intent_id(i) for i in y_true], ece_bins),
    }


def worst_errors(preds: Sequence[Understanding], gold: Sequence[Labelled], split: str, limit: int) -> list[dict]:
    """Wrong intents (most confident first), then utterances with wrong or missing slots."""
    rows = []
    for p, g in zip(preds, gold):
        wrong_slots = {k: [v, p.slots.get(k)] for k, v in g.slots.items() if p.slots.get(k) != v}
        extra = {k: [None, v] for k, v in p.slots.items() if k not in g.slots}
        if p.intent == g.intent and not wrong_slots and not extra:
            continue
        rows.append({
            "split": split,
            "text": g.text,
            "gold_intent": g.intent,
            "pred_intent": p.intent,
            "confidence": round(p.intent_confidence, 4),
            "slot_errors": json.dumps({**wrong_slots, **extra}, ensure_ascii=False),
            "severity": (2.0 + p.intent_confidence) if p.intent != g.intent else 1.0,
        })
    rows.sort(key=lambda r: -r["severity"])
    return rows[:limit]


# -- the run ---------------------------------------------------------------------------------------
def build_model(model_cfg: ConfigDict, train_texts: Sequence[str], labels: LabelMaps):
    """The untrained backend that ``model.backend`` names."""
    backend = model_cfg.get("backend", "char")
    rest = ConfigDict({k: v for k, v in model_cfg.items() if k != "backend"}, path="model")
    rest.sources = dict(model_cfg.sources)
    if backend == "char":
        from models.intent.charmodel import CharIntentModel, CharModelConfig

        return CharIntentModel.create(train_texts, labels, to_dataclass(CharModelConfig, rest))
    if backend == "hf":
        from models.intent.hf_backend import HFIntentModel, HFModelConfig

        return HFIntentModel.create(labels, to_dataclass(HFModelConfig, rest))
    raise ConfigError(f"model.backend '{backend}' is not one of char, hf (set in {model_cfg.where('backend')})")


def log_model_dir(model_dir: Path) -> None:
    """Log the saved model directory as the run's MLflow model ``model`` (pyfunc flavour; the directory
    itself is ``model/artifacts/intent_model``), so the registry can version it and ``load_intent_model``
    or ``mlflow.pyfunc.load_model`` can load it back."""
    import mlflow

    from models.intent import understand
    from training.tracking import pinned_requirements

    pins = pinned_requirements(("torch", "numpy", "safetensors", "pypinyin", "transformers"))
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / understand.PYFUNC_ARTIFACT  # MLflow keeps the folder's name under artifacts/
        shutil.copytree(model_dir, named)
        mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=understand.IntentPyfuncModel(),
            artifacts={understand.PYFUNC_ARTIFACT: str(named)},
            pip_requirements=pins,
        )


def weigh_experts(expert_lp: np.ndarray, y: Sequence[int], grid: Sequence[float]) -> tuple[tuple[float, ...], float]:
    """The expert weights (one grid value per expert) whose weighted sum of log-probs ``expert_lp``
    (utterances x experts x intents) classifies ``y`` best; ties go to the lower NLL after temperature 1.
    Returns (weights, accuracy)."""
    import itertools

    y = np.asarray(y)
    best: tuple | None = None
    for w in itertools.product(grid, repeat=expert_lp.shape[1]):
        z = np.tensordot(expert_lp, np.asarray(w, dtype=np.float64), axes=([1], [0]))
        acc = float((z.argmax(-1) == y).mean())
        nll = negative_log_likelihood(z, y, fit_temperature(z, y, "lbfgs"))
        key = (acc, -nll)
        if best is None or key > best[0]:
            best = (key, tuple(float(x) for x in w))
    assert best is not None
    return best[1], best[0][0]


def decide(model, data: Sequence[Labelled], logits, tag_log_probs) -> list[Understanding]:
    """``model.predict`` from scores already computed (so calibration and evaluation share one forward pass)."""
    return [understand(u.text, z, lp, model.labels, model.temperature, model.gazetteer)
            for u, z, lp in zip(data, logits, tag_log_probs)]


def model_and_loader(model_cfg: ConfigDict, train: Sequence[Labelled], clean: Sequence[Labelled], labels: LabelMaps,
                     batch_size: int, seed: int):
    """A fresh model whose vocabulary comes from ``train`` (the augmented examples) and whose gazetteer comes from
    the ``clean`` utterances, and the seeded, shuffled loader of ``train`` for it."""
    import torch
    from torch.utils.data import DataLoader

    model = build_model(model_cfg, [u.text for u in train], labels)
    model.gazetteer = build_gazetteer(clean)
    loader = DataLoader(to_examples(train, labels), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), collate_fn=partial(model.collate, train=True))
    return model, loader


def refit(model, clean: Sequence[Labelled], kept_steps: int, steps_per_epoch: int, model_cfg: ConfigDict,
          labels: LabelMaps, data_cfg: IntentDataConfig, optim_cfg, trainer_cfg, refit_cfg: RefitConfig,
          seed: int | None = None):
    """A fresh model of the same recipe trained on ``clean`` (train + validation utterances) for the step count
    early stopping kept (scaled by the data size with ``step_scale: data``), without evaluation; it takes over the
    calibrated expert weights and temperature of ``model``. ``seed`` (default ``trainer.seed``) seeds its
    initialisation and batch order: ensemble members differ only there."""
    import dataclasses
    import math

    from training.loop import fit, seed_everything

    seed = trainer_cfg.seed if seed is None else seed
    seed_everything(seed)
    train = augment_for_training(clean, data_cfg)
    new, loader = model_and_loader(model_cfg, train, clean, labels, data_cfg.batch_size, seed)
    steps = max(1, kept_steps)
    if refit_cfg.step_scale == "data":
        steps = max(1, math.ceil(steps * len(loader) / max(1, steps_per_epoch)))
    refit_trainer = dataclasses.replace(
        trainer_cfg, max_steps=steps, eval_every_n_steps=None, restore_best=False,
        early_stopping=dataclasses.replace(trainer_cfg.early_stopping, metric=None))
    print(f"[intent] refit (seed {seed}): {len(clean)} clean utterances (train + validation) -> {len(train)} training "
          f"examples, {steps} steps (early stopping kept {kept_steps})")
    from training.tracking import log_metrics

    tag = "refit" if seed == trainer_cfg.seed else f"refit{seed - trainer_cfg.seed}"
    fit(new.net, loader, None, optim_cfg, refit_trainer, None,
        log_fn=lambda metrics, step: log_metrics({f"{tag}_{k}": v for k, v in metrics.items()}, step))
    new.net.to("cpu").eval()
    if hasattr(new, "set_expert_weights") and hasattr(model, "config"):
        new.set_expert_weights(model.config.expert_weights)
    new.temperature = model.temperature
    return new


def selection_metrics(model, selection: Sequence[Labelled], labels: LabelMaps, ece_bins: int) -> dict[str, float]:
    """``sel_*`` scores (and ``sel_score``, as ``val_score``) of ``model`` on the selection split."""
    logits, tags = model.scores([u.text for u in selection])
    m = {f"sel_{k}": v for k, v in score(decide(model, selection, logits, tags), selection, labels, ece_bins).items()}
    m["sel_score"] = (m["sel_intent_accuracy"] + m["sel_slot_f1"]) / 2
    return m


def promote_metric_for(configured: str, refit: bool) -> str:
    """The metric the registry compares: the configured one, or with refit its selection-split twin (``val_score``
    -> ``sel_score``), since the refit model trained on validation."""
    return "sel_" + configured[len("val_"):] if refit and configured.startswith("val_") else configured


def _log_metrics(metrics: Mapping[str, float]) -> None:
    from training.tracking import log_metrics

    log_metrics(dict(metrics))


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow
    import torch
    from torch.utils.data import DataLoader

    from training import distributed as D
    from training.loop import fit, seed_everything
    from training.registry import register_and_maybe_promote
    from training.steps import compose, parse_args
    from training.tracking import log_confusion_matrix, log_per_class_f1, start_run

    # 1. parse arguments and compose the config
    args = parse_args("intent", DEFAULT_CONFIG, __doc__, "data.n_train=64 trainer.max_steps=2", argv)
    setup = compose(args, IntentDataConfig, CalibrationConfig, EvaluationConfig, default_name="intent")
    cfg, data_cfg, optim_cfg, trainer_cfg = setup.cfg, setup.data, setup.optim, setup.trainer
    calib_cfg, eval_cfg, model_name = setup.calibration, setup.evaluation, setup.name
    refit_cfg = to_dataclass(RefitConfig, cfg.get("refit", {}))
    if refit_cfg.members < 1 or (refit_cfg.members > 1 and not refit_cfg.enabled):
        raise ConfigError(f"refit.members={refit_cfg.members}: the number of refit models must be >= 1, and more than "
                          "one needs refit.enabled=true (members are refit models)")
    if refit_cfg.enabled and not data_cfg.corpus_dir and data_cfg.selection_templates <= 0:
        raise ConfigError("refit.enabled=true: the refit model trains on validation, so it is scored and compared on a "
                          "selection split that neither stage trains on; set data.selection_templates=1 (or more)")
    if refit_cfg.enabled and D.env_world_size() > 1:
        raise ConfigError("refit.enabled=true trains the final model in one process after the ranks finish; "
                          "pass refit.enabled=false for a multi-process (torchrun) run")
    labels = LabelMaps.from_taxonomy(DEFAULT_TAXONOMY)

    # 2. seed everything (and cap torch's CPU threads: OpenMP spin-waiting on a shared CPU is ~30x slower)
    seed_everything(trainer_cfg.seed)
    threads = cfg.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.time()

    # 3. data: clean splits, then a share of train/validation with ASR noise; the test split twice
    clean = load_data(data_cfg)
    train = augment_for_training(clean["train"], data_cfg)
    validation = mix_noise(clean["validation"], data_cfg.noise_prob, data_cfg.noise, seed=data_cfg.seed + 2)
    noisy_test = mix_noise(clean["test"], 1.0, data_cfg.noise, seed=eval_cfg.noise_seed)
    test = {"test": clean["test"], "test_noisy": noisy_test}  # the old test split (see data/synth/text.py)
    if "heldout" in clean:  # the fresh held-out set: what the README reports
        test["heldout"] = clean["heldout"]
        test["heldout_noisy"] = mix_noise(clean["heldout"], 1.0, data_cfg.noise, seed=eval_cfg.noise_seed)
    if refit_cfg.enabled and "selection" not in clean:
        raise ConfigError(f"refit.enabled=true needs a selection split: {data_cfg.corpus_dir}/selection.jsonl is missing")
    selection = (mix_noise(clean["selection"], data_cfg.noise_prob, data_cfg.noise, seed=data_cfg.seed + 5)
                 if "selection" in clean else None)
    print(f"[intent] data: {len(train)} train, {len(validation)} validation, {len(clean['test'])} test "
          f"({'corpus ' + data_cfg.corpus_dir if data_cfg.corpus_dir else 'generated text'}) in {time.time() - t0:.1f}s")

    # 4. model
    model, train_loader = model_and_loader(cfg["model"], train, clean["train"], labels, data_cfg.batch_size,
                                           trainer_cfg.seed)
    val_loader = DataLoader(to_examples(validation, labels), batch_size=max(data_cfg.batch_size, 64),
                            collate_fn=model.collate)

    def evaluate_fn(_net) -> dict[str, float]:
        m = score(model.predict([u.text for u in validation]), validation, labels, calib_cfg.ece_bins)
        return {"val_intent_accuracy": m["intent_accuracy"], "val_slot_f1": m["slot_f1"],
                "val_score": (m["intent_accuracy"] + m["slot_f1"]) / 2}

    manifest = Path(data_cfg.corpus_dir) / "train.jsonl" if data_cfg.corpus_dir else None
    with start_run(model_name, cfg, dataset_manifest=manifest) as run:
        # 5. fit
        t_fit = time.time()
        result = fit(model.net, train_loader, val_loader, optim_cfg, trainer_cfg, evaluate_fn)
        fit_seconds = time.time() - t_fit
        if not D.is_main_process():
            D.cleanup()
            return 0
        model.net.to("cpu").eval()

        # 6. calibrate: expert weights (char model, "grid"), then temperature scaling on validation logits
        val_y = [labels.intent_id(u.intent) for u in validation]
        if calib_cfg.expert_weights == "grid" and hasattr(model, "expert_log_probs"):
            weights, acc = weigh_experts(model.expert_log_probs([u.text for u in validation]), val_y, calib_cfg.expert_grid)
            model.set_expert_weights(weights)
            print(f"[intent] expert weights {weights} (validation intent accuracy {acc:.4f})")
            _log_metrics({f"expert_weight_{k}": w for k, w in enumerate(weights)})
        val_logits, val_tags = model.scores([u.text for u in validation])
        temperature, calib = calibrate(val_logits, val_y, calib_cfg.method, calib_cfg.ece_bins)
        model.temperature = temperature
        _log_metrics(calib)
        val_preds = decide(model, validation, val_logits, val_tags)
        val_metrics = {f"val_{k}": v for k, v in score(val_preds, validation, labels, calib_cfg.ece_bins).items()}
        val_metrics["val_score"] = (val_metrics["val_intent_accuracy"] + val_metrics["val_slot_f1"]) / 2
        _log_metrics(val_metrics)
        registered_metrics = dict(val_metrics)  # the registered model's own scores on data it did not train on
        if selection is not None:
            sel = selection_metrics(model, selection, labels, calib_cfg.ece_bins)
            _log_metrics({f"stage1_{k}": v for k, v in sel.items()})
            if not refit_cfg.enabled:
                registered_metrics.update(sel)
                _log_metrics(sel)

        # 6b. refit: fresh models on train + validation, same recipe and step count, stage-6 calibration; with
        #     refit.members > 1, one per seed, averaged
        refit_seconds = 0.0
        if refit_cfg.enabled:
            t_refit = time.time()
            members = [refit(model, clean["train"] + clean["validation"], result.best_step, len(train_loader),
                             cfg["model"], labels, data_cfg, optim_cfg, trainer_cfg, refit_cfg, seed=trainer_cfg.seed + k)
                       for k in range(refit_cfg.members)]
            if len(members) == 1:
                model = members[0]
            else:
                from models.intent.ensemble import EnsembleIntentModel

                model = EnsembleIntentModel(members)  # each member carries the stage-one temperature
            refit_seconds = time.time() - t_refit
            _log_metrics({"refit_seconds": refit_seconds, "refit_train_size": len(clean["train"]) + len(clean["validation"])})
            registered_metrics = selection_metrics(model, selection, labels, calib_cfg.ece_bins)  # not val_*: seen
            _log_metrics(registered_metrics)

        # 7. evaluate on the test split, clean and ASR-noised
        metrics: dict[str, float] = {}
        preds: dict[str, list[Understanding]] = {}
        for split, data in test.items():
            logits, tags = model.scores([u.text for u in data])
            preds[split] = decide(model, data, logits, tags)
            scores = score(preds[split], data, labels, calib_cfg.ece_bins)
            metrics.update({f"{split}_{k}": v for k, v in scores.items()})
            y = [labels.intent_id(u.intent) for u in data]
            metrics[f"{split}_ece_uncalibrated"] = expected_calibration_error(softmax(logits), y, calib_cfg.ece_bins)
        if "heldout" in test:
            from data.synth.heldout import FINGERPRINT

            mlflow.set_tag("heldout_fingerprint", FINGERPRINT)
        metrics["fit_seconds"] = fit_seconds + refit_seconds
        metrics["train_wall_seconds"] = time.time() - t0
        _log_metrics(metrics)

        # 8. plots and the worst-errors table, on validation (stage one's model): no test error is ever shown
        y_true, y_pred = [u.intent for u in validation], [p.intent for p in val_preds]
        log_confusion_matrix(y_true, y_pred, labels.intents, "val_confusion")
        log_per_class_f1(y_true, y_pred, labels.intents, "val_per_class_f1", metric_prefix="val_")
        errors = worst_errors(val_preds, validation, "validation", eval_cfg.worst_errors)
        if run is not None:
            columns = ("split", "text", "gold_intent", "pred_intent", "confidence", "slot_errors")
            table = {k: [r[k] for r in errors] for k in columns}
            mlflow.log_table(table, "worst_errors.json")

        # 9. save the model directory and log it as the run's model artifact
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(args.out) if args.out else Path(tmp) / MODEL_ARTIFACT
            model.save(model_dir)
            (model_dir / "metrics.json").write_text(
                json.dumps({**calib, **val_metrics, **registered_metrics, **metrics}, ensure_ascii=False, indent=2), encoding="utf-8")
            if run is not None:
                log_model_dir(model_dir)

        # 10. register and maybe promote to @champion on the registered model's own held-out score
        decision = None
        if run is not None:
            promote = promote_metric_for(eval_cfg.promote_metric, refit_cfg.enabled)
            if promote not in registered_metrics:
                raise ConfigError(
                    f"evaluation.promote_metric '{eval_cfg.promote_metric}' (compared as '{promote}') is not one of "
                    f"{sorted(registered_metrics)}"
                )
            decision = register_and_maybe_promote(run.info.run_id, MODEL_ARTIFACT, model_name, promote,
                                                  registered_metrics[promote])

    print(_summary(metrics, calib, result.global_step, decision))
    return 0


def _summary(metrics: Mapping[str, float], calib: Mapping[str, float], steps: int, decision: Any) -> str:
    keys = ("intent_accuracy", "intent_macro_f1", "slot_f1", "ticket_completeness", "complaint_f1", "ece")
    lines = [f"[intent] {steps} steps, fit {metrics['fit_seconds']:.0f}s, total {metrics['train_wall_seconds']:.0f}s; "
             f"temperature {calib['temperature']:.3f} (val ECE {calib['val_ece_before']:.4f} -> {calib['val_ece_after']:.4f})",
             f"{'metric':<22}{'held-out':>10}{'noised':>10}{'old test':>10}{'noised':>10}"]
    for k in keys:
        row = [metrics.get(f"{split}_{k}", float("nan")) for split in ("heldout", "heldout_noisy", "test", "test_noisy")]
        lines.append(f"{k:<22}" + "".join(f"{v:>10.4f}" for v in row))
    if decision is not None:
        lines.append(f"registry: {decision.model_name} v{decision.version} {'promoted to @champion' if decision.promoted else 'not promoted'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
