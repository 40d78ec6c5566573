"""Speech recognition: pretrained Whisper loaded without a model hub (``bootstrap``), dialect prompts
(``dialects``), CTranslate2 export (``export``), voice activity detection (``vad``) and the one recogniser used
by predict, the notebooks and the service (``recognizer``)."""

from models.asr.bootstrap import (
    WHISPER_BASE_FILES,
    WeightsError,
    convert_ct2_to_hf,
    ct2_model_dir,
    load_whisper,
    read_ct2_model,
    whisper_base_hf,
)
from models.asr.export import ExportError, export_ct2
from models.asr.recognizer import Recognizer, RecognizerOptions, Segment, Transcript, for_scoring
from models.asr.vad import VadConfig, speech_segments

__all__ = [
    "WHISPER_BASE_FILES",
    "ExportError",
    "Recognizer",
    "RecognizerOptions",
    "Segment",
    "Transcript",
    "VadConfig",
    "WeightsError",
    "convert_ct2_to_hf",
    "ct2_model_dir",
    "export_ct2",
    "for_scoring",
    "load_whisper",
    "read_ct2_model",
    "speech_segments",
    "whisper_base_hf",
]
