"""``hotline train asr``: fine-tune Whisper on the corpus with the dialect made explicit to the decoder.

    hotline train asr                                   # CPU recipe: frozen cached encoder, decoder tuned (~20 min)
    hotline train asr --config training/configs/asr_gpu.yaml   # GPU recipe: encoder in the loop, SpecAugment, bf16
    hotline train asr data.max_train=200 trainer.max_steps=50 trainer.max_minutes=5

Every utterance is decoded as ``<|startofprev|> <dialect prompt> <|startoftranscript|> <|zh|> <|transcribe|>
<|notimestamps|> text <|endoftext|>`` (models/asr/dialects.py), loss on the text and ``<|endoftext|>`` only.

Steps of :func:`main`:
 1. parse arguments and compose the config
 2. seed everything, cap torch threads
 3. data: a dialect-balanced subsample of the corpus' train and validation splits (speaker-disjoint)
 4. model: Whisper (bootstrapped whisper-base or a local folder); encoder frozen or trained; decoder fully tuned
    or with LoRA adapters on its attention projections; SpecAugment and gradient checkpointing as configured
 5. encoder states (``model.encoder: cached``): the frozen encoder runs once per utterance on the 30-s padded
    log-mel features; float16 states cached under ``data.cache_dir`` (resumable)
 6. zero-shot baseline: the untouched model, ``<|zh|>`` and no prompt, greedy, on the same validation states
 7. fit (training/loop.fit): evaluation every ``trainer.eval_every_n_steps`` = greedy decoding with the dialect
    prompt, CER overall and per dialect, sample transcripts as a text artifact; best weights kept;
    ``trainer.max_minutes`` stops training when its wall-clock budget is spent
 8. real speech (``evaluation.realspeech_manifest``): zero-shot vs fine-tuned CER on real recordings; without it
    (missing manifest, no records, an exception) the run still registers the model but never promotes it
 9. save the model folder (transformers + processor + hotline_asr.json + ct2/), log it as the run's ``model``
    artifact, register as ``asr`` (promoted when val_cer_numnorm beats the champion's and the real-speech guard
    real_cer_numnorm <= real_zero_shot_cer_numnorm holds; CER is logged both ways, as EVALUATION.md defines it and
    with numerals written as digits on both sides)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np

from models.asr.dialects import (
    ASR_CONFIG_FILE,
    ASR_FORMAT,
    CT2_SUBDIR,
    DEFAULT_LANGUAGE,
    DIALECT_PROMPTS,
    decoder_prefix_ids,
    dialect_prompt,
    language_for,
    prompt_token_ids,
)
from models.taxonomy import DIALECTS
from training.config import CONFIG_ROOT, ConfigDict, ConfigError, load_config, to_dataclass
from training.features import read_split_manifest, repo_path

if TYPE_CHECKING:
    import torch

DEFAULT_CONFIG = CONFIG_ROOT / "asr.yaml"
SPLITS = ("train", "validation")
MODEL_ARTIFACT = "model"  # MLflow artifact path of the saved model folder
# registry: never promote a model worse than zero-shot on real speech, numbers written one way on both sides (whisper
# writes digits, the references and the synthetic corpus spell numbers out); a missing figure blocks promotion
REAL_SPEECH_GUARD = ("real_cer_numnorm", "real_zero_shot_cer_numnorm")
SAMPLES_DIR = "samples"  # MLflow artifact folder of the sample transcript tables
UNKNOWN = "unknown"  # dialect group of records without a dialect label


# -- config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AsrDataConfig:
    corpus_dir: str = "data/corpus/default"  # folder with train.jsonl and validation.jsonl (text, dialect, audio)
    max_train: int | None = None  # dialect-balanced subsample of the train split; null = all
    max_validation: int | None = None  # dialect-balanced subsample of validation; null = all
    cache_dir: str = "data/cache/asr"  # encoder-state cache (relative paths: to the repository)
    batch_size: int = 8  # utterances per training batch
    num_workers: int = 0  # DataLoader workers that load audio (encoder in the loop only)
    seed: int = 0  # subsampling


@dataclass(frozen=True)
class StateMaskConfig:
    """SpecAugment analogue on cached encoder states (training only): zeroed time spans and feature channels."""

    time_prob: float = 0.0  # share of encoder frames covered by time masks (0 = off)
    time_length: int = 10  # frames per time mask (20 ms each)
    feature_prob: float = 0.0  # share of d_model channels covered by feature masks (0 = off)
    feature_length: int = 16  # channels per feature mask


@dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment on the log-mel input (Whisper config ``apply_spec_augment``; encoder in the loop only)."""

    apply: bool = False  # WhisperConfig.apply_spec_augment
    mask_time_prob: float = 0.05  # WhisperConfig.mask_time_prob: share of mel frames masked
    mask_time_length: int = 10  # WhisperConfig.mask_time_length: frames per time mask (10 ms each)
    mask_time_min_masks: int = 2  # WhisperConfig.mask_time_min_masks
    mask_feature_prob: float = 0.0  # WhisperConfig.mask_feature_prob: share of mel bins masked
    mask_feature_length: int = 10  # WhisperConfig.mask_feature_length: bins per feature mask
    mask_feature_min_masks: int = 0  # WhisperConfig.mask_feature_min_masks


@dataclass(frozen=True)
class AsrModelConfig:
    base: str = "whisper-base"  # "whisper-base" (bootstrapped from PyPI) or a local transformers Whisper folder
    encoder: Literal["cached", "frozen", "trained"] = "cached"  # cached states / frozen in the loop / fine-tuned
    decoder: Literal["full", "lora", "cross_attention"] = "full"  # every decoder weight / LoRA adapters on its
    # attention / only the cross-attention blocks (the decoder's language model stays as it was)
    train_embeddings: bool = False  # also tune the token embeddings (tied to the output projection)
    lora_rank: int = 16  # LoRA rank r
    lora_alpha: float = 32.0  # LoRA scale alpha (the update is alpha / r * B A)
    lora_dropout: float = 0.05  # dropout on the LoRA input
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")  # decoder attention projections
    max_label_tokens: int = 128  # transcript tokens kept per utterance (longer ones are cut)
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, ~30% more time)
    dropout: float = 0.0  # WhisperConfig.dropout during fine-tuning
    state_mask: StateMaskConfig = field(default_factory=StateMaskConfig)  # encoder: cached
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)  # encoder: frozen or trained
    interpolate: float = 0.5  # WiSE-FT: keep base + interpolate * (tuned - base); < 1 keeps more of the pretrained
    # model's general knowledge (fixed a priori, not tuned on real speech)


@dataclass(frozen=True)
class AsrEvaluationConfig:
    batch_size: int = 16  # utterances decoded together (one dialect per batch)
    max_new_tokens: int = 128  # greedy decoding stops here (zero-shot models can loop)
    samples_per_dialect: int = 3  # ref | hyp lines per dialect in each sample table
    zero_shot: bool = True  # also score the untouched model (<|zh|>, no prompt) on the same validation states
    decode_threads: int | None = 1  # torch threads while decoding (many tiny ops: a 2nd thread on a busy CPU only waits)
    realspeech_manifest: str | None = "../shared/realspeech/manifest.jsonl"  # real recordings; missing or null: the guard fails, no promotion
    realspeech_dialects: tuple[str, ...] = ("mandarin",)  # dialects of it scored
    realspeech_max: int = 60  # utterances of it scored (first ones by id)
    promote_metric: str = "val_cer_numnorm"  # registry: lower is better (the number-normalised CER)


@dataclass(frozen=True)
class AsrRun:
    """The typed config of one run."""

    data: AsrDataConfig
    model: AsrModelConfig
    evaluation: AsrEvaluationConfig
    optim: Any  # training.loop.OptimConfig
    trainer: Any  # training.loop.TrainerConfig
    max_minutes: float | None  # trainer.max_minutes: wall-clock budget of fit (null = none)
    threads: int | None  # torch CPU threads
    name: str  # MLflow experiment and registered model name


def parse_config(cfg: ConfigDict) -> AsrRun:
    """The composed config as typed dataclasses (``trainer.max_minutes`` split off TrainerConfig)."""
    from training.loop import OptimConfig, TrainerConfig

    trainer = ConfigDict({k: v for k, v in cfg["trainer"].items() if k != "max_minutes"}, path="trainer")
    trainer.sources = dict(cfg["trainer"].sources)
    max_minutes = cfg["trainer"].get("max_minutes")
    if max_minutes is not None and (not isinstance(max_minutes, (int, float)) or max_minutes <= 0):
        raise ConfigError(f"trainer.max_minutes must be a positive number or null, got {max_minutes!r} "
                          f"(set in {cfg['trainer'].where('max_minutes')})")
    run = AsrRun(
        data=to_dataclass(AsrDataConfig, cfg["data"]),
        model=to_dataclass(AsrModelConfig, cfg["model"]),
        evaluation=to_dataclass(AsrEvaluationConfig, cfg.get("evaluation", {})),
        optim=to_dataclass(OptimConfig, cfg["optim"]),
        trainer=to_dataclass(TrainerConfig, trainer),
        max_minutes=None if max_minutes is None else float(max_minutes),
        threads=None if cfg.get("threads") is None else int(cfg["threads"]),
        name=str(cfg.get("name", "asr")),
    )
    for d in run.evaluation.realspeech_dialects:
        if d not in DIALECTS:
            raise ConfigError(f"evaluation.realspeech_dialects: '{d}' is not a dialect ({', '.join(DIALECTS)})")
    if run.model.lora_rank < 1:
        raise ConfigError(f"model.lora_rank must be >= 1, got {run.model.lora_rank}")
    return run


# -- data ------------------------------------------------------------------------------------------
def read_split(corpus_dir: Path, split: str) -> list[dict]:
    """Records of ``<corpus_dir>/<split>.jsonl`` with audio and a transcript."""
    path = corpus_dir / f"{split}.jsonl"
    m = read_split_manifest(path, "asr", "data.corpus_dir must hold train.jsonl and validation.jsonl "
                            f"(build one with `hotline data synth --out {corpus_dir}`)")
    recs = [r for r in m.records if r.get("audio_path") and (r.get("text") or "").strip()]
    if not recs:
        raise ValueError(f"{path} has no records with both 'audio' and 'text': nothing to train or score on")
    return recs


def balanced_subsample(records: Sequence[dict], n: int | None, seed: int) -> list[dict]:
    """At most ``n`` records, as even over dialects as the data allow (all when ``n`` is None), sorted by id."""
    if n is None or n >= len(records):
        return sorted(records, key=lambda r: r["id"])
    if n < 1:
        raise ConfigError(f"a subsample size must be >= 1 or null, got {n}")
    rng = random.Random(seed)
    by: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["id"]):
        by.setdefault(r.get("dialect") or UNKNOWN, []).append(r)
    for v in by.values():
        rng.shuffle(v)
    out: list[dict] = []
    while len(out) < n:
        progressed = False
        for d in sorted(by):
            if by[d] and len(out) < n:
                out.append(by[d].pop())
                progressed = True
        if not progressed:
            break
    return sorted(out, key=lambda r: r["id"])


def load_data(cfg: AsrDataConfig) -> dict[str, list[dict]]:
    """Dialect-balanced train and validation subsamples of the corpus."""
    corpus = repo_path(cfg.corpus_dir)
    return {
        "train": balanced_subsample(read_split(corpus, "train"), cfg.max_train, cfg.seed),
        "validation": balanced_subsample(read_split(corpus, "validation"), cfg.max_validation, cfg.seed + 1),
    }


def load_utterance(rec: Mapping[str, Any]) -> np.ndarray:
    """16 kHz mono float32 audio of a record (corpus audio is telephone audio already)."""
    from data.audio import SAMPLE_RATE, load_audio

    return load_audio(rec["audio_path"], SAMPLE_RATE, allow_silent=True)


# -- tokens ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tokenized:
    """One utterance's decoder sequence: prompt + prefix + text + <|endoftext|>."""

    ids: list[int]  # the whole decoder input
    n_context: int  # prompt + prefix tokens (no loss on them)


def prompt_for(dialect: str | None, use_prompt: bool = True) -> str:
    """The dialect prompt (dialects.py), or "" for an unknown dialect or ``use_prompt=False``."""
    if not use_prompt or dialect is None or dialect not in DIALECTS:
        return ""
    return dialect_prompt(dialect)


def context_ids(tokenizer: Any, dialect: str | None, use_prompt: bool = True) -> list[int]:
    """``<|startofprev|> prompt`` (when prompted) + ``<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>``."""
    vocab = tokenizer.get_vocab()
    language = language_for(dialect if dialect in DIALECTS else None, vocab) if use_prompt else DEFAULT_LANGUAGE
    return prompt_token_ids(tokenizer, prompt_for(dialect, use_prompt)) + decoder_prefix_ids(tokenizer, language)


def tokenize(tokenizer: Any, rec: Mapping[str, Any], max_label_tokens: int) -> Tokenized:
    """The training sequence of ``rec`` (its ``text`` as spoken, its ``dialect`` as the prompt)."""
    ctx = context_ids(tokenizer, rec.get("dialect"))
    text = tokenizer.encode(str(rec["text"]).strip(), add_special_tokens=False)[:max_label_tokens]
    return Tokenized(ids=[*ctx, *text, tokenizer.eos_token_id], n_context=len(ctx))


def collate_tokens(items: Sequence[Tokenized], pad_id: int) -> dict[str, "torch.Tensor"]:
    """``decoder_input_ids`` right-padded with ``pad_id``, and ``target_mask`` (True where a token is a target)."""
    import torch

    width = max(len(t.ids) for t in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    for i, t in enumerate(items):
        ids[i, : len(t.ids)] = torch.tensor(t.ids)
        mask[i, t.n_context : len(t.ids)] = True
    return {"decoder_input_ids": ids, "target_mask": mask}


# -- LoRA ------------------------------------------------------------------------------------------
def _lora_class():
    import torch
    from torch import nn

    class _LoRALinear(nn.Module):
        """``base(x) + alpha/r * B(A(dropout(x)))`` with ``base`` frozen and B starting at zero."""

        def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.lora_a = nn.Linear(base.in_features, rank, bias=False)
            self.lora_b = nn.Linear(rank, base.out_features, bias=False)
            nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_b.weight)
            self.dropout = nn.Dropout(dropout)
            base.weight.requires_grad_(False)
            if base.bias is not None:
                base.bias.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + self.lora_b(self.lora_a(self.dropout(x))) * self.scale

        def merged(self) -> nn.Linear:
            """The base layer with the adapter folded into its weight."""
            with torch.no_grad():
                self.base.weight += (self.lora_b.weight @ self.lora_a.weight) * self.scale
            return self.base

    return _LoRALinear


def add_lora(decoder: Any, targets: Sequence[str], rank: int, alpha: float, dropout: float) -> int:
    """Wrap the decoder's attention projections named in ``targets`` (self- and cross-attention) with LoRA;
    returns how many were wrapped."""
    cls = _lora_class()
    n = 0
    for layer in decoder.layers:
        for attn in (layer.self_attn, layer.encoder_attn):
            for name in targets:
                lin = getattr(attn, name, None)
                if lin is None:
                    raise ConfigError(f"model.lora_targets: the decoder attention has no '{name}' (use q_proj, k_proj, v_proj, out_proj)")
                setattr(attn, name, cls(lin, rank, alpha, dropout))
                n += 1
    return n


def merge_lora(decoder: Any) -> int:
    """Fold every LoRA adapter back into a plain Linear (the model is a stock Whisper again); returns how many."""
    n = 0
    for layer in decoder.layers:
        for attn in (layer.self_attn, layer.encoder_attn):
            for name, child in list(attn.named_children()):
                if hasattr(child, "merged") and hasattr(child, "lora_a"):
                    setattr(attn, name, child.merged())
                    n += 1
    return n


# -- the model being trained -----------------------------------------------------------------------
def _train_module_class():
    import torch
    from torch import nn

    class WhisperFineTune(nn.Module):
        """Wraps a WhisperForConditionalGeneration for training/loop.fit: ``forward(**batch) -> {"loss"}``.

        A batch has ``decoder_input_ids``, ``target_mask`` and either ``encoder_states`` (cached, optionally
        masked here) or ``input_features`` (log-mel; SpecAugment is Whisper's own, in train mode)."""

        def __init__(self, whisper: nn.Module, encoder_mode: str, state_mask: StateMaskConfig) -> None:
            super().__init__()
            self.whisper = whisper
            self.encoder_mode = encoder_mode
            self.state_mask = state_mask

        def _mask_states(self, h: torch.Tensor) -> torch.Tensor:
            sm = self.state_mask
            if not self.training or (sm.time_prob <= 0 and sm.feature_prob <= 0):
                return h
            from transformers.models.whisper.modeling_whisper import _compute_mask_indices

            b, t, d = h.shape
            h = h.clone()
            if sm.time_prob > 0:
                m = _compute_mask_indices((b, t), mask_prob=sm.time_prob, mask_length=sm.time_length, min_masks=1)
                h[torch.as_tensor(m, device=h.device)] = 0.0
            if sm.feature_prob > 0:
                m = _compute_mask_indices((b, d), mask_prob=sm.feature_prob, mask_length=sm.feature_length, min_masks=1)
                h = h * (~torch.as_tensor(m, device=h.device))[:, None, :]
            return h

        def encoder_states(self, input_features: torch.Tensor) -> torch.Tensor:
            model = self.whisper.model
            if self.encoder_mode == "trained":
                feats = model._mask_input_features(input_features) if self.training else input_features
                return model.encoder(input_features=feats).last_hidden_state
            with torch.no_grad():  # frozen encoder in the loop: SpecAugment still applies to its input
                feats = model._mask_input_features(input_features) if self.training else input_features
                return model.encoder(input_features=feats).last_hidden_state

        def forward(self, decoder_input_ids: torch.Tensor, target_mask: torch.Tensor,
                    encoder_states: torch.Tensor | None = None, input_features: torch.Tensor | None = None) -> dict:
            if encoder_states is None:
                if input_features is None:
                    raise ValueError("a batch needs encoder_states (cached) or input_features (log-mel)")
                encoder_states = self.encoder_states(input_features)
            else:
                encoder_states = self._mask_states(encoder_states)
            out = self.whisper.model.decoder(input_ids=decoder_input_ids, encoder_hidden_states=encoder_states,
                                             use_cache=False)
            logits = self.whisper.proj_out(out.last_hidden_state[:, :-1])
            targets = decoder_input_ids[:, 1:]
            mask = target_mask[:, 1:]
            loss = nn.functional.cross_entropy(logits[mask].float(), targets[mask])
            return {"loss": loss}

    return WhisperFineTune


def prepare_model(whisper: Any, cfg: AsrModelConfig) -> Any:
    """Set trainable parameters, LoRA, SpecAugment, dropout and gradient checkpointing on ``whisper`` as
    configured; returns the fit-ready wrapper module."""
    wc = whisper.config
    wc.dropout = cfg.dropout
    sa = cfg.spec_augment
    wc.apply_spec_augment = bool(sa.apply and cfg.encoder != "cached")
    wc.mask_time_prob, wc.mask_time_length, wc.mask_time_min_masks = sa.mask_time_prob, sa.mask_time_length, sa.mask_time_min_masks
    wc.mask_feature_prob, wc.mask_feature_length = sa.mask_feature_prob, sa.mask_feature_length
    wc.mask_feature_min_masks = sa.mask_feature_min_masks
    for p in whisper.parameters():
        p.requires_grad_(False)
    decoder = whisper.model.decoder
    if cfg.decoder == "lora":
        add_lora(decoder, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout)
    elif cfg.decoder == "cross_attention":
        for name, p in decoder.named_parameters():
            if ".encoder_attn." in name or ".encoder_attn_layer_norm." in name:
                p.requires_grad_(True)
    else:
        for name, p in decoder.named_parameters():
            if not name.startswith("embed_tokens"):
                p.requires_grad_(True)
    if cfg.train_embeddings:
        decoder.embed_tokens.weight.requires_grad_(True)
    if cfg.encoder == "trained":
        for p in whisper.model.encoder.parameters():
            p.requires_grad_(True)
    if cfg.gradient_checkpointing:
        whisper.config.use_cache = False
        whisper.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return _train_module_class()(whisper, cfg.encoder, cfg.state_mask)


def interpolate_weights(tuned: Any, base: Any, weight: float) -> None:
    """WiSE-FT in place: every floating-point tensor of ``tuned`` becomes base + weight * (tuned - base)."""
    import torch

    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"model.interpolate must be in [0, 1], got {weight}")
    base_sd = base.state_dict()
    seen: set[int] = set()  # tied tensors (output projection = token embeddings) are moved once
    with torch.no_grad():
        for name, t in tuned.state_dict().items():
            if t.is_floating_point() and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                t.copy_(base_sd[name].to(t.device, t.dtype) + weight * (t - base_sd[name].to(t.device, t.dtype)))


def count_parameters(module: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# -- datasets --------------------------------------------------------------------------------------
class DeadlineSampler:
    """Random order over ``n`` items (a new shuffle each epoch) that stops yielding once ``deadline`` (a
    ``time.monotonic()`` value, set later) has passed: the wall-clock budget of fit."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.deadline: float | None = None  # time.monotonic() after which no more items are given
        self.expired = False  # True once the deadline cut an epoch short

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng(self.seed + self.epoch).permutation(self.n)
        self.epoch += 1
        for i in order:
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.expired = True
                return
            yield int(i)


def _datasets():
    import torch
    from torch.utils.data import Dataset

    class CachedStates(Dataset):
        """(encoder states, tokens) of cached utterances."""

        def __init__(self, cache, tokens: Sequence[Tokenized]) -> None:
            self.cache, self.tokens = cache, list(tokens)

        def __len__(self) -> int:
            return len(self.tokens)

        def __getitem__(self, i: int):
            return np.asarray(self.cache.states(i), dtype=np.float32), self.tokens[i]

    class AudioFeatures(Dataset):
        """(log-mel features, tokens) computed from audio when asked (encoder in the loop)."""

        def __init__(self, records: Sequence[dict], tokens: Sequence[Tokenized], feature_extractor: Any) -> None:
            self.records, self.tokens, self.fe = list(records), list(tokens), feature_extractor

        def __len__(self) -> int:
            return len(self.tokens)

        def __getitem__(self, i: int):
            from data.audio import SAMPLE_RATE
            from models.asr.encoder_cache import log_mel

            return log_mel(self.fe, [load_utterance(self.records[i])], SAMPLE_RATE)[0], self.tokens[i]

    def collate(pad_id: int, key: str) -> Callable:
        def fn(items):
            batch = collate_tokens([t for _, t in items], pad_id)
            batch[key] = torch.from_numpy(np.stack([x for x, _ in items]))
            return batch

        return fn

    return CachedStates, AudioFeatures, collate


# -- decoding and scoring --------------------------------------------------------------------------
def suppressed_ids(whisper: Any) -> tuple[list[int], list[int]]:
    """(always suppressed token ids, suppressed at the first position) from the generation config."""
    gc = getattr(whisper, "generation_config", None)
    always = list(getattr(gc, "suppress_tokens", None) or [])
    begin = list(getattr(gc, "begin_suppress_tokens", None) or [])
    return always, begin


def greedy_decode(whisper: Any, states: "torch.Tensor", context: Sequence[int], eos_id: int, max_new_tokens: int,
                  suppress: Sequence[int] = (), begin_suppress: Sequence[int] = ()) -> list[list[int]]:
    """Greedy transcripts (token ids, without the context and <|endoftext|>) of a batch of encoder ``states``
    sharing one decoder ``context`` (prompt + prefix), with Whisper's token suppression. The decoder keeps a
    key/value cache, so each new token costs one small step."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    device = next(whisper.parameters()).device
    b = states.shape[0]
    cur = torch.tensor([list(context)] * b, dtype=torch.long, device=device)
    states = states.to(device, dtype=next(whisper.parameters()).dtype)
    past = EncoderDecoderCache(DynamicCache(), DynamicCache())
    vocab = whisper.proj_out.out_features
    always = torch.tensor([i for i in suppress if 0 <= i < vocab], dtype=torch.long, device=device)
    first = torch.tensor([i for i in begin_suppress if 0 <= i < vocab], dtype=torch.long, device=device)
    out = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    limit = min(max_new_tokens, whisper.config.max_target_positions - len(context))
    with torch.no_grad():
        for step in range(max(0, limit)):
            o = whisper.model.decoder(input_ids=cur, encoder_hidden_states=states, past_key_values=past, use_cache=True)
            past = o.past_key_values
            logits = whisper.proj_out(o.last_hidden_state[:, -1]).float()
            if len(always):
                logits[:, always] = -math.inf
            if step == 0 and len(first):
                logits[:, first] = -math.inf
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            for i in range(b):
                if not done[i] and int(nxt[i]) != eos_id:
                    out[i].append(int(nxt[i]))
            done |= nxt == eos_id
            if bool(done.all()):
                break
            cur = nxt[:, None]
    return out


def transcribe_states(whisper: Any, tokenizer: Any, get_states: Callable[[Sequence[int]], "torch.Tensor"],
                      dialects: Sequence[str | None], use_prompt: bool, batch_size: int, max_new_tokens: int,
                      progress: bool = False, desc: str = "decode") -> list[str]:
    """Greedy transcripts of utterances ``0..n-1`` (encoder states from ``get_states(indices)``), batched per
    dialect so each batch shares its prompt; ``use_prompt=False`` = zero-shot (``<|zh|>``, no prompt)."""
    from tqdm import tqdm

    suppress, begin = suppressed_ids(whisper)
    eos = tokenizer.eos_token_id
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(dialects):
        groups.setdefault(d if use_prompt and d in DIALECTS else UNKNOWN, []).append(i)
    texts: list[str] = [""] * len(dialects)
    was_training = whisper.training
    whisper.eval()
    try:
        with tqdm(total=len(dialects), desc=desc, unit="utt", disable=not progress, mininterval=5.0) as bar:
            for d, idx in groups.items():
                ctx = context_ids(tokenizer, None if d == UNKNOWN else d, use_prompt)
                for s in range(0, len(idx), batch_size):
                    part = idx[s : s + batch_size]
                    ids = greedy_decode(whisper, get_states(part), ctx, eos, max_new_tokens, suppress, begin)
                    for i, t in zip(part, tokenizer.batch_decode(ids, skip_special_tokens=True)):
                        texts[i] = t.strip()
                    bar.update(len(part))
    finally:
        whisper.train(was_training)
    return texts


def score_transcripts(records: Sequence[Mapping[str, Any]], hyps: Sequence[str], prefix: str) -> dict[str, float]:
    """``<prefix>cer`` overall and ``<prefix>cer_<dialect>`` per dialect (CER per character after
    models/textnorm normalisation, which maps traditional to simplified), and the same after writing numerals as
    digits on both sides: ``<prefix>cer_numnorm`` and ``<prefix>cer_numnorm_<dialect>``."""
    from training.metrics import cer_by_group

    res = cer_by_group((r.get("dialect") or UNKNOWN, r["text"], h) for r, h in zip(records, hyps))
    out = {f"{prefix}cer": res["cer"], f"{prefix}cer_numnorm": res["cer_numnorm"]}
    out.update({f"{prefix}cer_{g}": v["cer"] for g, v in res["per_group"].items()})
    out.update({f"{prefix}cer_numnorm_{g}": v["cer_numnorm"] for g, v in res["per_group"].items()})
    return out


def sample_table(records: Sequence[Mapping[str, Any]], hyps: Sequence[str], per_dialect: int,
                 baseline: Sequence[str] | None = None) -> str:
    """A plain-text table of reference and hypothesis (and zero-shot) transcripts, ``per_dialect`` per dialect."""
    from models.textnorm import cer

    lines = []
    seen: dict[str, int] = {}
    for k, (r, h) in enumerate(zip(records, hyps)):
        d = r.get("dialect") or UNKNOWN
        if seen.get(d, 0) >= per_dialect:
            continue
        seen[d] = seen.get(d, 0) + 1
        lines.append(f"[{d}] {r['id']}  CER {cer(r['text'], h):.3f}")
        lines.append(f"  ref | {r['text']}")
        lines.append(f"  hyp | {h}")
        if baseline is not None:
            lines.append(f"  0-shot | {baseline[k]}")
    return "\n".join(lines) + "\n"


# -- encoder states --------------------------------------------------------------------------------
def encoder_source_id(base: str) -> str:
    """What identifies the encoder weights in a cache key."""
    from models.asr.bootstrap import WHISPER_BASE_ALIASES, WHISPER_BASE_FILES
    from models.asr.encoder_cache import encoder_fingerprint

    if base in WHISPER_BASE_ALIASES:
        return f"whisper-base:{WHISPER_BASE_FILES['model.bin'][:16]}"
    return f"{Path(base).resolve()}:{encoder_fingerprint(base)}"


def states_cache(whisper: Any, processor: Any, records: Sequence[dict], base: str, cache_dir: Path, desc: str,
                 batch_size: int = 8, progress: bool = True):
    """The :class:`EncoderStateCache` of ``records`` (built now where missing)."""
    from data.audio import SAMPLE_RATE
    from models.asr.encoder_cache import build_encoder_cache, cache_key

    fe = processor.feature_extractor
    settings = {"sr": SAMPLE_RATE, "n_mels": fe.feature_size, "chunk_length": fe.chunk_length, "hop": fe.hop_length}
    key = cache_key("whisper-encoder", [(r["id"], r["audio_path"]) for r in records], encoder_source_id(base), settings)
    return build_encoder_cache(whisper, fe, lambda i: load_utterance(records[i]), len(records), cache_dir / key,
                               SAMPLE_RATE, batch_size=batch_size, desc=desc, progress=progress,
                               info={"encoder": encoder_source_id(base), "records": len(records), **settings})


def read_realspeech(path: Path, dialects: Sequence[str], limit: int) -> list[dict]:
    """The first ``limit`` records (by id) of a real-speech manifest in ``dialects``."""
    from data.manifest import read_manifest

    m = read_manifest(path)
    recs = [r for r in m.records if r.get("dialect") in dialects and r.get("audio_path") and r.get("text")]
    return sorted(recs, key=lambda r: r["id"])[:limit]


# -- saving ----------------------------------------------------------------------------------------
def save_model_folder(whisper: Any, processor: Any, folder: Path, base: str, trained_dialects: Sequence[str],
                      metrics: Mapping[str, float], export: bool = True) -> dict[str, Any]:
    """Write the fine-tuned model folder: transformers weights + processor + ASR_CONFIG_FILE, and its CTranslate2
    export in ``ct2/`` (when models.asr.export and ctranslate2 are available). Returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    whisper.config.use_cache = True
    whisper.config.apply_spec_augment = False
    whisper.save_pretrained(folder)
    processor.save_pretrained(folder)
    config = {
        "format": ASR_FORMAT,
        "base": base,
        "language": DEFAULT_LANGUAGE,
        "dialect_prompts": dict(DIALECT_PROMPTS),
        "sample_rate": 16000,
        "trained_dialects": sorted(trained_dialects),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    (folder / ASR_CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    written = {"folder": str(folder), "ct2": None}
    if export:
        try:
            from models.asr.export import export_ct2
        except ImportError as e:
            print(f"[asr] CTranslate2 export skipped: models.asr.export is not importable ({e})", file=sys.stderr)
            return written
        try:
            written["ct2"] = str(export_ct2(folder, folder / CT2_SUBDIR))
        except Exception as e:  # the HF folder is still a complete model; say why the export is missing
            print(f"[asr] CTranslate2 export failed, the folder has no {CT2_SUBDIR}/: {type(e).__name__}: {e}",
                  file=sys.stderr)
    return written


def write_mlmodel(folder: Path, run_id: str) -> None:
    """An ``MLmodel`` file in the folder, so the registry accepts ``runs:/<run>/model`` as a model version. It names
    no Python flavour: the folder itself is the model (models/asr/recognizer.py loads it after a download)."""
    from mlflow.models import Model

    m = Model(artifact_path=MODEL_ARTIFACT, run_id=run_id,
              metadata={"hotline": "asr model folder", "config": ASR_CONFIG_FILE, "ct2": CT2_SUBDIR})
    m.save(str(folder / "MLmodel"))


# -- the run ---------------------------------------------------------------------------------------
def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max_steps", type=int, default=None, help="shortcut for trainer.max_steps=N")
    p.add_argument("--no_export", action="store_true", help="skip the CTranslate2 export")


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from models.asr.bootstrap import load_whisper
    from training.loop import fit, seed_everything
    from training.registry import register_and_maybe_promote
    from training.steps import parse_args
    from training.tracking import log_metrics, start_run

    # 1. parse arguments and compose the config
    args = parse_args("asr", DEFAULT_CONFIG, __doc__, "data.max_train=64 trainer.max_minutes=5", argv, extra=_flags)
    overrides = ([f"trainer.max_steps={args.max_steps}"] if args.max_steps else []) + list(args.overrides)  # flags win
    cfg = load_config(args.config, overrides)
    run_cfg = parse_config(cfg)
    mc, dc, ec, tc = run_cfg.model, run_cfg.data, run_cfg.evaluation, run_cfg.trainer

    # 2. seed everything, cap threads
    seed_everything(tc.seed)
    if run_cfg.threads:
        torch.set_num_threads(run_cfg.threads)
    train_threads = torch.get_num_threads()
    t0 = time.time()

    # 3. data
    data = load_data(dc)
    counts = {s: {d: sum((r.get("dialect") or UNKNOWN) == d for r in recs) for d in (*DIALECTS, UNKNOWN)}
              for s, recs in data.items()}
    print(f"[asr] data ({dc.corpus_dir}): " + ", ".join(f"{len(data[s])} {s}" for s in SPLITS))
    manifest = repo_path(dc.corpus_dir) / "train.jsonl"

    # 4. model
    whisper, processor = load_whisper(mc.base)
    tokenizer = processor.tokenizer
    if len(tokenizer) > whisper.config.vocab_size:
        raise ConfigError(f"model.base {mc.base}: its tokenizer has {len(tokenizer)} tokens but the model only "
                          f"{whisper.config.vocab_size}; save the processor that belongs to the model with it")
    device = torch.device("cuda" if (tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available())) else "cpu")
    tokens = {s: [tokenize(tokenizer, r, mc.max_label_tokens) for r in data[s]] for s in SPLITS}
    cache_dir = repo_path(dc.cache_dir)

    def decoding(threads: int | None):
        class _Ctx:
            def __enter__(self):
                if threads and device.type == "cpu":
                    torch.set_num_threads(threads)

            def __exit__(self, *exc):
                torch.set_num_threads(train_threads)

        return _Ctx()

    with start_run(run_cfg.name, cfg, dataset_manifest=manifest) as run:
        log_metrics({f"n_{s}_{d}": c for s, cs in counts.items() for d, c in cs.items() if c})
        metrics: dict[str, float] = {}

        # 5. encoder states (the frozen encoder once per utterance), validation always cached for scoring
        whisper.to(device)
        t_cache = time.time()
        caches = {}
        for s in SPLITS:
            if s == "validation" or mc.encoder == "cached":
                caches[s] = states_cache(whisper, processor, data[s], mc.base, cache_dir, f"encoder {s}",
                                         batch_size=dc.batch_size, progress=tc.progress_bar)
        metrics["cache_seconds"] = time.time() - t_cache
        print(f"[asr] encoder states ready in {metrics['cache_seconds']:.0f} s")
        val_recs = data["validation"]
        val_dialects = [r.get("dialect") for r in val_recs]

        def val_states(idx: Sequence[int]) -> torch.Tensor:
            return caches["validation"].batch(idx)

        # 6. zero-shot baseline on the same validation states
        zero_hyps: list[str] | None = None
        if ec.zero_shot:
            t_zs = time.time()
            with decoding(ec.decode_threads):
                zero_hyps = transcribe_states(whisper, tokenizer, val_states, val_dialects, False, ec.batch_size,
                                              ec.max_new_tokens, tc.progress_bar, "zero-shot")
            zs = score_transcripts(val_recs, zero_hyps, "zero_shot_val_")
            metrics.update(zs)
            metrics["zero_shot_seconds"] = time.time() - t_zs
            log_metrics(zs)
            _log_text(sample_table(val_recs, zero_hyps, ec.samples_per_dialect), f"{SAMPLES_DIR}/zero_shot.txt")
            print("[asr] zero-shot validation CER: " + _cer_line(zs, "zero_shot_val_"))

        # 7. fit
        module = prepare_model(whisper, mc)
        trainable, total = count_parameters(module)
        log_metrics({"params_trainable": trainable, "params_total": total})
        print(f"[asr] training {trainable / 1e6:.1f}M of {total / 1e6:.1f}M parameters "
              f"(encoder {mc.encoder}, decoder {mc.decoder})")
        CachedStates, AudioFeatures, collate = _datasets()
        from torch.utils.data import DataLoader

        if mc.encoder == "cached":
            train_ds = CachedStates(caches["train"], tokens["train"])
            fn = collate(tokenizer.eos_token_id, "encoder_states")
        else:
            train_ds = AudioFeatures(data["train"], tokens["train"], processor.feature_extractor)
            fn = collate(tokenizer.eos_token_id, "input_features")
        sampler = DeadlineSampler(len(train_ds), tc.seed)
        loader = DataLoader(train_ds, batch_size=dc.batch_size, sampler=sampler, collate_fn=fn,
                            num_workers=dc.num_workers)
        evals = {"n": 0}

        def evaluate_fn(net) -> dict[str, float]:
            t_eval = time.time()
            with decoding(ec.decode_threads):
                hyps = transcribe_states(net.whisper, tokenizer, val_states, val_dialects, True, ec.batch_size,
                                         ec.max_new_tokens)
            sc = score_transcripts(val_recs, hyps, "val_")
            evals["n"] += 1
            evals["last_hyps"] = hyps
            _log_text(sample_table(val_recs, hyps, ec.samples_per_dialect, zero_hyps),
                      f"{SAMPLES_DIR}/eval_{evals['n']:03d}.txt")
            evals["seconds"] = evals.get("seconds", 0.0) + time.time() - t_eval
            print(f"[asr] eval {evals['n']}: validation CER " + _cer_line(sc, "val_"), flush=True)
            return sc

        t_fit = time.time()
        sampler.deadline = None if run_cfg.max_minutes is None else time.monotonic() + 60.0 * run_cfg.max_minutes
        result = fit(module, loader, None, run_cfg.optim, tc, evaluate_fn)
        metrics["fit_seconds"] = time.time() - t_fit
        metrics["steps"] = float(result.global_step)
        metrics["stopped_by_time_budget"] = float(sampler.expired)
        metrics["eval_seconds"] = evals.get("seconds", 0.0)
        metrics["seconds_per_step"] = (metrics["fit_seconds"] - metrics["eval_seconds"]) / max(1, result.global_step)
        if result.train_losses:
            k = max(1, len(result.train_losses) // 10)
            metrics["train_loss_first"] = float(np.mean(result.train_losses[:k]))
            metrics["train_loss_last"] = float(np.mean(result.train_losses[-k:]))
        val_metrics = {k: v for k, v in result.best_metrics.items() if k.startswith("val_cer")}
        if not val_metrics:  # restore_best off or no evaluation kept: score what we have
            with decoding(ec.decode_threads):
                hyps = transcribe_states(whisper, tokenizer, val_states, val_dialects, True, ec.batch_size, ec.max_new_tokens)
            val_metrics = score_transcripts(val_recs, hyps, "val_")
        metrics["best_step"] = float(result.best_step)
        if mc.decoder == "lora":
            merge_lora(whisper.model.decoder)
        if mc.gradient_checkpointing:
            whisper.gradient_checkpointing_disable()
        whisper.eval()
        if mc.interpolate != 1.0:  # WiSE-FT: the saved model is a point between the base and the tuned weights
            interpolate_weights(whisper, load_whisper(mc.base)[0], mc.interpolate)
            with decoding(ec.decode_threads):
                hyps = transcribe_states(whisper, tokenizer, val_states, val_dialects, True, ec.batch_size, ec.max_new_tokens)
            metrics.update({f"tuned_{k}": v for k, v in val_metrics.items()})
            val_metrics = score_transcripts(val_recs, hyps, "val_")
            log_metrics({f"interpolated_{k}": v for k, v in val_metrics.items()})
            _log_text(sample_table(val_recs, hyps, ec.samples_per_dialect, zero_hyps), f"{SAMPLES_DIR}/interpolated.txt")
            print(f"[asr] interpolated (weight {mc.interpolate}) validation CER " + _cer_line(val_metrics, "val_"))

        # 8. real speech: zero-shot vs fine-tuned on real recordings; without it (no manifest, no records, an
        #    exception) the model is still saved and registered, but never promoted (the guard fails closed)
        blocked = None
        try:
            metrics.update(_realspeech(whisper, processor, ec, cache_dir, mc, device, decoding))
        except RealSpeechUnavailable as e:
            blocked = str(e)
        except Exception as e:  # noqa: BLE001 - recorded as the reason promotion is blocked
            blocked = f"the real-speech check raised {type(e).__name__}: {e}"
        if blocked:
            print(f"[asr] {blocked}: the real-speech guard cannot be checked, so this model will not be promoted",
                  file=sys.stderr)
            if run is not None:
                import mlflow

                mlflow.set_tag("realspeech.error", blocked[:5000])
        metrics["train_wall_seconds"] = time.time() - t0
        log_metrics(metrics)
        log_metrics({f"final_{k}": v for k, v in val_metrics.items()})
        if ec.promote_metric not in val_metrics:
            raise ConfigError(f"evaluation.promote_metric '{ec.promote_metric}' is not one of {sorted(val_metrics)}")

        # 9. save, log, register
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.out) if args.out else Path(tmp) / MODEL_ARTIFACT
            written = save_model_folder(whisper.cpu(), processor, folder, mc.base, sorted({d for d in val_dialects if d}),
                                        {**val_metrics, **{k: v for k, v in metrics.items() if k.startswith(("zero_shot_", "real_"))}},
                                        export=not args.no_export)
            decision = None
            if run is not None:
                import mlflow

                write_mlmodel(folder, run.info.run_id)
                mlflow.log_artifacts(str(folder), artifact_path=MODEL_ARTIFACT)
                mlflow.set_tag("asr.ct2_export", "yes" if written["ct2"] else "no")
                decision = register_and_maybe_promote(run.info.run_id, MODEL_ARTIFACT, run_cfg.name, ec.promote_metric,
                                                      val_metrics[ec.promote_metric], higher_is_better=False,
                                                      guard=REAL_SPEECH_GUARD, blocked=blocked)
    print(_summary(metrics, val_metrics, decision))
    return 0


def _realspeech(whisper, processor, ec: AsrEvaluationConfig, cache_dir: Path, mc: AsrModelConfig, device,
                decoding) -> dict[str, float]:
    """Zero-shot (the base model, ``<|zh|>``, no prompt) vs fine-tuned (dialect prompt) CER on real recordings.
    Raises :class:`RealSpeechUnavailable` when there is nothing to check on (the caller blocks promotion)."""
    import torch

    from data.audio import SAMPLE_RATE
    from models.asr.bootstrap import load_whisper
    from models.asr.encoder_cache import encode, log_mel

    if not ec.realspeech_manifest:
        raise RealSpeechUnavailable("evaluation.realspeech_manifest is null: no real-speech check")
    path = repo_path(ec.realspeech_manifest)
    if not path.is_file():
        raise RealSpeechUnavailable(f"evaluation.realspeech_manifest {path} not found")
    recs = read_realspeech(path, ec.realspeech_dialects, ec.realspeech_max)
    if not recs:
        raise RealSpeechUnavailable(f"{path}: no records of {list(ec.realspeech_dialects)}")
    t = time.time()
    dialects = [r.get("dialect") for r in recs]
    tok = processor.tokenizer
    base, _ = load_whisper(mc.base)
    base.to(device)
    base_cache = states_cache(base, processor, recs, mc.base, cache_dir, "encoder realspeech", progress=False)
    if mc.encoder == "trained":  # the fine-tuned encoder differs from the base's: its states are not cached
        feats = [log_mel(processor.feature_extractor, [load_utterance(r)], SAMPLE_RATE) for r in recs]
        tuned = torch.cat([encode(whisper, f).float().cpu() for f in feats])
        tuned_states: Callable = lambda idx: tuned[list(idx)]  # noqa: E731
    else:
        tuned_states = base_cache.batch
    out: dict[str, float] = {}
    for name, model, states, use_prompt in (("real_zero_shot_", base, base_cache.batch, False),
                                            ("real_", whisper, tuned_states, True)):
        with decoding(ec.decode_threads):
            hyps = transcribe_states(model, tok, states, dialects, use_prompt, ec.batch_size, ec.max_new_tokens)
        out.update(score_transcripts(recs, hyps, name))
        _log_text(sample_table(recs, hyps, ec.samples_per_dialect), f"{SAMPLES_DIR}/{name}realspeech.txt")
    del base
    out["real_seconds"] = time.time() - t
    print(f"[asr] real speech ({len(recs)} {'/'.join(ec.realspeech_dialects)}): zero-shot CER "
          f"{out.get('real_zero_shot_cer', float('nan')):.4f}, fine-tuned {out.get('real_cer', float('nan')):.4f}; "
          f"numbers normalised: zero-shot {out.get('real_zero_shot_cer_numnorm', float('nan')):.4f}, "
          f"fine-tuned {out.get('real_cer_numnorm', float('nan')):.4f}")
    return out


class RealSpeechUnavailable(RuntimeError):
    """The real-speech check has nothing to run on (no manifest, no records of the dialects asked for)."""


def _log_text(text: str, path: str) -> None:
    from training.tracking import _active

    if _active() is not None:
        import mlflow

        mlflow.log_text(text, path)


def _cer_line(m: Mapping[str, float], prefix: str) -> str:
    parts = [f"{m[prefix + 'cer']:.4f}"]
    parts += [f"{d} {m[prefix + 'cer_' + d]:.4f}" for d in (*DIALECTS, UNKNOWN) if prefix + "cer_" + d in m]
    line = parts[0] + " (" + ", ".join(parts[1:]) + ")"
    if prefix + "cer_numnorm" in m:
        line += f"; numbers normalised {m[prefix + 'cer_numnorm']:.4f}"
    return line


def _summary(metrics: Mapping[str, float], val: Mapping[str, float], decision: Any) -> str:
    g = metrics.get
    lines = [f"[asr] {int(g('steps', 0))} steps ({g('seconds_per_step', float('nan')):.2f} s/step; evaluations "
             f"{g('eval_seconds', 0):.0f} s), "
             f"cache {g('cache_seconds', 0):.0f} s, fit {g('fit_seconds', 0):.0f} s, total {g('train_wall_seconds', 0):.0f} s"
             + (" (stopped by trainer.max_minutes)" if g("stopped_by_time_budget") else "")]
    if "zero_shot_val_cer" in metrics:
        lines.append("zero-shot  val CER " + _cer_line(metrics, "zero_shot_val_"))
    lines.append("fine-tuned val CER " + _cer_line(val, "val_"))
    if "real_cer" in metrics:
        lines.append(f"real speech CER: zero-shot {g('real_zero_shot_cer'):.4f}, fine-tuned {g('real_cer'):.4f}; "
                     f"numbers normalised: zero-shot {g('real_zero_shot_cer_numnorm', float('nan')):.4f}, "
                     f"fine-tuned {g('real_cer_numnorm', float('nan')):.4f}")
    if decision is not None:
        lines.append(f"registry: {decision.model_name} v{decision.version} "
                     f"{'promoted to @champion' if decision.promoted else 'not promoted'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
