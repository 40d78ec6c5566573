"""HTTP resources of ticket operations (issue 12), mounted on serving/api.py's app by :func:`mount`:

- ``POST /qa`` (platform, agent, supervisor): one call's quality check on its own, nothing stored. JSON
  ``{"segments": [{"channel", "start", "end", "text"}, ...]}``, or multipart with ``audio`` (stereo: channel 0 the
  agent) or a ``segments`` field holding that JSON list. Turn texts masked for every role but supervisor.
- ``GET /analytics/qa?by=agent|call&since=&until=&agent=&limit=`` (supervisor): per-agent and per-call scores.
- ``GET /analytics/hotspots?window=1h&history=6&alpha=0.01`` (supervisor): complaint counts by intent, product and
  region against the previous windows, spike alerts (each announced once as a "hotspot.spike" notification),
  repeat complainants (callers masked for every role but supervisor).
- ``GET /analytics/csat?since=&until=`` (supervisor): CSAT (mean 1..5, share of 4-5) by queue, intent and agent.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Query, Request

from serving.runtime import BadInput


def _range(since: Optional[datetime], until: Optional[datetime]) -> tuple[Optional[datetime], Optional[datetime]]:
    for name, v in (("since", since), ("until", until)):
        if v is not None and v.tzinfo is None:
            raise BadInput(f"`{name}` {v.isoformat()} has no time zone: add one, e.g. 2026-12-01T08:00:00+08:00",
                           status=422)
    return since, until


def _mask_result(result: dict, key: Any) -> dict:
    from models.ticket import mask_text
    from serving.auth import can

    if can(key.role, "read_unmasked"):
        return result
    return {**result, "violations": [{**v, "text": mask_text(v.get("text") or "")}
                                     for v in result.get("violations") or ()]}


def mount(app: FastAPI, require: Callable[[str], Any], runtime: Callable[[], Any]) -> None:
    @app.post("/qa", summary="One call's service-quality check (nothing stored)")
    async def qa(request: Request, key=Depends(require("models"))):
        from serving.operations import check_segments

        rt = runtime()
        ctype = request.headers.get("content-type", "")
        segments: Any = None
        if ctype.startswith("application/json"):
            body = await request.body()
            if len(body) > rt.settings.max_json_bytes * 16:
                raise BadInput(f"the body is larger than {rt.settings.max_json_bytes * 16} bytes", status=413)
            try:
                payload = json.loads(body or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise BadInput('the body is not valid JSON; send {"segments": [...]}', status=400) from None
            segments = payload.get("segments") if isinstance(payload, dict) else None
        else:
            form = await request.form()
            audio, raw = form.get("audio"), form.get("segments")
            if audio is not None and not isinstance(audio, str):
                from serving.api import _record

                record, _, _ = await _record(audio, None, None, rt.settings.max_call_seconds, "qa")
                pred = await rt.process(record)
                segments = pred.get("segments") or []
                if not segments:
                    raise BadInput("no speech was recognised in the audio: nothing to check", status=422)
            elif isinstance(raw, str):
                try:
                    segments = json.loads(raw)
                except json.JSONDecodeError:
                    raise BadInput("`segments` is not valid JSON: send a list of {channel, start, end, text}",
                                   status=400) from None
        try:
            result = check_segments(segments)
        except ValueError as e:
            raise BadInput(str(e), status=422) from None
        return {**_mask_result(result, key), "stored": False}

    @app.get("/analytics/qa", summary="Quality-check scores per agent and per call")
    async def analytics_qa(by: str = Query("agent", description="agent (agents and calls) or call (calls only)"),
                           since: Optional[datetime] = Query(None), until: Optional[datetime] = Query(None),
                           agent: Optional[str] = Query(None), limit: int = Query(500, ge=1, le=10000),
                           key=Depends(require("analytics"))):
        from serving.operations import qa_analytics

        if by not in ("agent", "call"):
            raise BadInput(f"by={by!r}: use agent or call", status=422)
        rt = runtime()
        since, until = _range(since, until)
        out = qa_analytics(rt.store, since=since, until=until, agent=agent, limit=limit)
        if by == "call":
            out.pop("agents")
        rt.store.audit(key, "analytics.qa", None, f"{out['calls_checked']} calls")
        return {"by": by, **out}

    @app.get("/analytics/hotspots", summary="Complaint hotspots by intent, product and region, with spike alerts")
    async def analytics_hotspots(window: str = Query("1h", description="15m, 1h, 1d, 1w, ..."),
                                 history: int = Query(6, ge=1, le=100, description="previous windows compared"),
                                 alpha: float = Query(0.01, gt=0, lt=1),
                                 key=Depends(require("analytics"))):
        import asyncio

        from models.hotspots import parse_window
        from serving.auth import can
        from serving.operations import check_hotspots, mask_report

        rt = runtime()
        try:
            parse_window(window)
        except ValueError as e:
            raise BadInput(str(e), status=422) from None
        report = await asyncio.to_thread(check_hotspots, rt.store, rt.clock.now(), window, history, alpha=alpha)
        rt.store.audit(key, "analytics.hotspots", None, f"{window} x{history}: {len(report['alerts'])} alerts")
        return report if can(key.role, "read_unmasked") else mask_report(report)

    @app.get("/analytics/csat", summary="Customer satisfaction by queue, intent and agent")
    async def analytics_csat(since: Optional[datetime] = Query(None), until: Optional[datetime] = Query(None),
                             key=Depends(require("analytics"))):
        from serving.operations import csat_report

        rt = runtime()
        since, until = _range(since, until)
        out = csat_report(rt.store, since=since, until=until)
        rt.store.audit(key, "analytics.csat", None, f"{out['overall']['responses']} scores")
        return out
