"""The service's settings: one frozen dataclass read from ``HOTLINE_*`` environment variables.

Every limit a call platform can meet (upload size, call length, concurrency, time-outs) is here with its unit,
so the error it produces can name the variable to change. No heavy imports.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024  # bytes


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # HOTLINE_DATABASE_URL; None: the SQLite file of serving/store.py
    policy_path: str | None = None  # HOTLINE_POLICY: a policy YAML; None: models/policies/default.yaml
    max_upload_mb: float = 50.0  # HOTLINE_MAX_UPLOAD_MB: largest audio upload accepted, in MiB (413 beyond)
    max_call_seconds: float = 3600.0  # HOTLINE_MAX_CALL_SECONDS: longest call accepted, in s (413 beyond)
    max_route_seconds: float = 60.0  # HOTLINE_MAX_ROUTE_SECONDS: longest first utterance /route accepts, in s
    max_text_chars: int = 20000  # HOTLINE_MAX_TEXT_CHARS: longest text message accepted, in characters
    max_json_bytes: int = 64 * 1024  # HOTLINE_MAX_JSON_BYTES: largest JSON body (events, queue_state), in bytes
    max_concurrency: int = 16  # HOTLINE_MAX_CONCURRENCY: requests the entry service admits at once (429 beyond)
    timeout_s: int = 600  # HOTLINE_TIMEOUT_S: a request's time limit in the entry service, in s (504 beyond)
    claim_lease_s: float = 900.0  # HOTLINE_CLAIM_LEASE_S: how long a ticket creation in flight blocks a retry, in s
    retry_after_s: int = 5  # HOTLINE_RETRY_AFTER_S: Retry-After given with 409, 429 and 503, in s
    recognition_workers: int = 1  # HOTLINE_RECOGNITION_WORKERS: recogniser processes
    recognition_gpus: int = field(default_factory=lambda: 1 if shutil.which("nvidia-smi") else 0)
    # HOTLINE_RECOGNITION_GPUS: GPUs per recogniser worker (default: 1 when nvidia-smi exists, else 0)
    cpu_threads: int = 0  # HOTLINE_CPU_THREADS: intra-op threads per model worker (0: the library's default)

    @classmethod
    def from_env(cls) -> "Settings":
        """Settings from ``HOTLINE_<FIELD>`` variables (upper case); a bad value names the variable."""
        kwargs = {}
        for f in fields(cls):
            var = f"HOTLINE_{f.name.upper()}"
            raw = os.environ.get(var)
            if raw is None or raw == "":
                continue
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            try:
                if kind.startswith("int"):
                    kwargs[f.name] = int(raw)
                elif kind.startswith("float"):
                    kwargs[f.name] = float(raw)
                else:
                    kwargs[f.name] = raw
            except ValueError:
                raise ValueError(f"{var}={raw!r}: expected {kind.split(' ')[0]}") from None
        return cls(**kwargs)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)
