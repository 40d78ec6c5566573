"""The hotline service: the entry BentoML service that call platforms, agents' tools and the console reach.

``bentoml serve serving.service:Hotline`` (``make serve``). The REST resources of ``../shared/API.md`` are a FastAPI
app mounted on the entry service; every call runs :meth:`models.pipeline.Pipeline.aprocess` (the one path for a
call, the same as ``hotline predict``) with the model services of ``serving/model_services.py`` as its components
(``bentoml.depends``; their APIs are called through ``.to_async`` and batched there). Decisions come from the policy
file, persistence from ``serving/store.py``, keys and roles from ``serving/auth.py``.

The entry service stays thin: parse and check the request (``serving/requests.py``), authorise, run the pipeline,
persist, answer. Errors are JSON ``{"error": ...}`` with the status API.md names; overload answers 429 with
``Retry-After`` (``HOTLINE_MAX_CONCURRENCY``; BentoML's ``max_concurrency`` stays as a hard cap above it).
"""

from __future__ import annotations

import bentoml

from serving.api import app, readiness_middleware
from serving.model_services import AudioAnalysis, Recognition, Understanding
from serving.settings import Settings

SETTINGS = Settings.from_env()


@bentoml.service(
    name="hotline",
    workers=1,
    resources={"cpu": "1"},
    # BentoML's cap sits above ours (serving/api.py's admission answers 429 with Retry-After first).
    traffic={"timeout": SETTINGS.timeout_s, "max_concurrency": 2 * SETTINGS.max_concurrency + 8},
)
@bentoml.asgi_app(app, path="/")
class Hotline:
    """Routing and auto-ticketing for hotline calls and messages (API.md)."""

    recognition = bentoml.depends(Recognition)
    analysis = bentoml.depends(AudioAnalysis)
    understanding = bentoml.depends(Understanding)

    def __init__(self) -> None:
        from serving.runtime import Runtime

        # Settings are read again here (not at import) so a test or a restart with other HOTLINE_* variables counts.
        self.runtime = Runtime(Settings.from_env(), self.recognition, self.analysis, self.understanding)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """The worker is stopping: its scheduler and operations threads end, the database pool is released."""
        self.runtime.close()

    async def __is_ready__(self) -> bool:
        return (await self.runtime.readiness())["ready"]


Hotline.add_asgi_middleware(readiness_middleware)
