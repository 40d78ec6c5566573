"""An intent model that averages several members: the same recipe trained with different seeds.

Held-out phrasings are where a single model is least stable: seeds of one recipe differ in validation intent
accuracy because a few unseen templates flip as a whole. The ensemble averages the members' *calibrated* intent
probabilities (each member's logits over its own temperature: members whose experts are weighted differently have
logits of different scales) and their slot-tag probabilities; expect it to buy stability rather than a higher
ceiling (measure it: ``sel_score`` of ``hotline train intent refit.enabled=true data.selection_templates=1
refit.members=3`` against the same with ``refit.members=1``). Decoding and slot filling are the shared
:class:`ScoredIntentModel` ones, so an ensemble predicts like any backend; its ``temperature`` is 1 (its scores are
already calibrated log-probabilities).

Saved directory::

    config.json   {"backend": "ensemble", "labels": {...}, "temperature": T, "members": ["member-0", ...]}
    member-0/     a saved intent model of any backend (loaded with ``load_intent_model``)
    member-1/     ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from models.calibration import log_softmax
from models.intent.understand import CONFIG_FILE, ScoredIntentModel, load_intent_model, read_model_config

BACKEND = "ensemble"
MEMBER_DIR = "member-{}"  # sub-folder of member k


class EnsembleIntentModel(ScoredIntentModel):
    """Mean of the members' calibrated intent probabilities and of their per-character tag probabilities."""

    def __init__(self, members: Sequence, temperature: float = 1.0):
        if not members:
            raise ValueError("an ensemble needs at least one member model")
        self.members = list(members)
        self.labels = self.members[0].labels
        for k, m in enumerate(self.members[1:], start=1):
            if m.labels.to_json() != self.labels.to_json():
                raise ValueError(f"member {k} has other labels than member 0: all members must share one taxonomy")
        self.temperature = float(temperature)  # applied on top of the members' own calibration
        self.gazetteer = {}
        for m in self.members:  # the product names any member learned
            for slot, values in getattr(m, "gazetteer", {}).items():
                self.gazetteer[slot] = tuple(dict.fromkeys((*self.gazetteer.get(slot, ()), *values)))

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(log of the mean calibrated intent probabilities: texts x intents, per text the log of the mean tag
        probabilities: chars x tags)."""
        outs = [m.scores(list(texts)) for m in self.members]
        log_probs = [log_softmax(o[0], m.temperature) for o, m in zip(outs, self.members)]
        logits = np.logaddexp.reduce(np.stack(log_probs), axis=0) - np.log(len(outs))
        tags = []
        for i in range(len(texts)):
            stacked = np.stack([o[1][i] for o in outs])  # members x chars x tags
            tags.append(np.logaddexp.reduce(stacked, axis=0) - np.log(len(outs)))
        return logits, tags

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        names = [MEMBER_DIR.format(k) for k in range(len(self.members))]
        for m, name in zip(self.members, names):
            m.save(d / name)
        config = {"backend": BACKEND, "labels": self.labels.to_json(), "temperature": self.temperature,
                  "members": names}
        (d / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "EnsembleIntentModel":
        d = Path(directory)
        config = read_model_config(d)
        if config.get("backend") != BACKEND:
            raise ValueError(f"{d / CONFIG_FILE} says backend {config.get('backend')!r}; use load_intent_model({str(d)!r})")
        names = config.get("members") or []
        missing = [n for n in names if not (d / n / CONFIG_FILE).is_file()]
        if not names or missing:
            raise FileNotFoundError(f"{d}: member folder(s) {missing or '(none listed)'} missing: the ensemble directory "
                                    "is incomplete; re-save or retrain it")
        return cls([load_intent_model(d / n) for n in names], temperature=config.get("temperature", 1.0))
