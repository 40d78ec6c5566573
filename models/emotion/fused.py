"""The emotion the pipeline reports: audio scores fused with the transcript's wording, per caller.

A trained emotion model folder holds the audio model and ``fusion.json`` (written by ``hotline train emotion``):
which text signal to use (lexicon, n-gram or both), the fusion weight and the angry log-bias that set the escalation
operating point, all chosen on validation transcripts with simulated recognition errors. :class:`FusedEmotion`
applies exactly that at inference:

1. audio probabilities of the segment; a speaker-normalising model normalises against the caller's earlier segments
   (``caller`` key; statistics kept in memory, oldest callers forgotten beyond ``max_callers``),
2. text probabilities of the transcript (when one is given),
3. log-linear fusion with the saved weight, then the angry bias.

Without ``fusion.json`` (older models, the HF backend) it is the audio model alone.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

FUSION_FILE = "fusion.json"  # in an emotion model folder: the text signal, fusion weight and angry bias
MAX_CALLERS = 10_000  # callers whose running statistics are kept (least recently heard forgotten first)


@dataclass(frozen=True)
class FusionSettings:
    text_signal: str  # lexicon | ngram | lexicon_ngram
    text_weight: float  # 0 = audio only, 1 = text only (log-linear)
    angry_bias: float  # log-bias added to "angry" after fusion (escalation operating point)
    ngram: Mapping[str, Any] | None  # the fitted n-gram text signal (NgramTextSignal.to_dict) when used


def read_fusion(folder: str | os.PathLike) -> FusionSettings | None:
    """The fusion settings saved next to an emotion model, or None when the folder has none."""
    path = Path(folder) / FUSION_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    signal = str(raw.get("text_signal", "lexicon"))
    if signal not in ("lexicon", "ngram", "lexicon_ngram"):
        raise ValueError(f"{path}: unknown text_signal {signal!r}; expected lexicon, ngram or lexicon_ngram")
    if signal != "lexicon" and not raw.get("ngram"):
        raise ValueError(f"{path}: text_signal {signal!r} needs the saved 'ngram' model; retrain with hotline train emotion")
    return FusionSettings(signal, float(raw.get("text_weight", 0.0)), float(raw.get("angry_bias") or 0.0), raw.get("ngram"))


class FusedEmotion:
    """``classify(audio, text=None, caller=None)`` -> EmotionResult with fused probabilities."""

    def __init__(self, audio_model: Any, fusion: FusionSettings | None, max_callers: int = MAX_CALLERS) -> None:
        from models.emotion.text_signal import LexiconTextSignal, NgramTextSignal

        self.audio_model = audio_model
        self.fusion = fusion
        self.labels = list(audio_model.labels)
        self.lexicon = LexiconTextSignal(labels=self.labels) if fusion is not None else None
        self.ngram = NgramTextSignal.from_dict(fusion.ngram) if fusion is not None and fusion.ngram else None
        self.max_callers = max_callers
        self._callers: OrderedDict[str, Any] = OrderedDict()

    # -- pieces --------------------------------------------------------------------------------------
    def audio_probs(self, audio: np.ndarray, caller: str | None = None) -> tuple[np.ndarray, float]:
        """(calibrated audio probabilities, arousal) of one 16 kHz segment; remembers it for ``caller``."""
        model = self.audio_model
        if not getattr(model, "normalises", False):
            r = model.classify(audio)
            return np.array([r.probs[lab] for lab in self.labels]), float(r.arousal)
        x = model.inputs(*model.raw_features([audio]))
        history = None
        if caller is not None:
            history = self._callers.pop(caller, None) or model.new_caller()
            self._callers[caller] = history  # most recently heard last
            while len(self._callers) > self.max_callers:
                self._callers.popitem(last=False)
        xn = model.normalise(x, history=history) if history is not None else model.normalise(x)
        if history is not None:
            history.add(x)
        probs, arousal = model.probs(xn)
        return probs[0], float(arousal[0])

    def text_probs(self, text: str) -> np.ndarray:
        """The saved text signal's probabilities for ``text``."""
        from models.emotion.text_signal import combine

        assert self.fusion is not None and self.lexicon is not None
        if self.fusion.text_signal == "lexicon":
            return self.lexicon.predict_proba([text])[0]
        p_ngram = self.ngram.predict_proba([text])
        if self.fusion.text_signal == "ngram":
            return p_ngram[0]
        return combine(self.lexicon.predict_proba([text]), p_ngram)[0]

    # -- the classifier the pipeline calls -----------------------------------------------------------
    def classify(self, audio: np.ndarray, text: str | None = None, caller: str | None = None):
        """Fused emotion of one segment: audio (caller-normalised), transcript wording, escalation bias."""
        from models.emotion.fusion import fuse, with_bias
        from models.emotion.model import result

        p_audio, arousal = self.audio_probs(audio, caller)
        p = p_audio[None]
        if self.fusion is not None and text:
            p = fuse(p, self.text_probs(text)[None], self.fusion.text_weight)
        if self.fusion is not None and self.fusion.angry_bias and "angry" in self.labels:
            p = with_bias(p, self.labels.index("angry"), self.fusion.angry_bias)
        return result(p[0], arousal, self.labels)

    def forget(self, caller: str | None = None) -> None:
        """Drop the running statistics of ``caller`` (or of every caller)."""
        if caller is None:
            self._callers.clear()
        else:
            self._callers.pop(caller, None)


def load_fused_emotion(folder: str | os.PathLike) -> FusedEmotion:
    """The emotion model in ``folder`` with its saved fusion settings (audio alone when it has none)."""
    from models.emotion.model import load_emotion_model

    return FusedEmotion(load_emotion_model(folder), read_fusion(folder))
