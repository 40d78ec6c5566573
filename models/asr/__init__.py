"""Speech recognition: pretrained Whisper loaded without a model hub (``bootstrap``), dialect-aware fine-tuning."""

from models.asr.bootstrap import (
    WHISPER_BASE_FILES,
    WeightsError,
    convert_ct2_to_hf,
    ct2_model_dir,
    load_whisper,
    read_ct2_model,
    whisper_base_hf,
)

__all__ = [
    "WHISPER_BASE_FILES",
    "WeightsError",
    "convert_ct2_to_hf",
    "ct2_model_dir",
    "load_whisper",
    "read_ct2_model",
    "whisper_base_hf",
]
