"""The web console for agents and supervisors (issue 13): static HTML, CSS and plain ES modules in this folder,
served by the entry service, no build step.

:func:`mount` adds to the API's FastAPI app:

- ``GET /console``: the single page (login with an API key kept in ``sessionStorage``; ``#/agent`` and
  ``#/supervisor`` views). The page itself is public: everything it shows comes from the API with the key the
  user pastes, under the same roles and masking as any other client.
- ``GET /console/static/...``: the page's modules and style sheet.
- ``GET /policy``: a read-only summary of the loaded policy for the people who work tickets (agent, supervisor):
  Chinese names of intents, slots, emotions and dialects, each intent's queue, priority and required slots (the
  console lists the information still to ask the caller for), the SLA rules, and the caller's own role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


def policy_summary(policy: Any) -> dict:
    """What the console needs of a :class:`models.decisions.Policy`, as JSON."""
    tax = policy.taxonomy
    intents = {}
    for it in tax.intents:
        rule = policy.rule(it.name)
        intents[it.name] = {"zh": it.zh, "is_complaint": bool(it.is_complaint), "queue": rule.queue,
                            "skill": rule.skill, "priority": rule.priority,
                            "required_slots": list(rule.required_slots)}
    return {
        "version": policy.version,
        "name": policy.name,
        "intents": intents,
        "slots": {s.name: s.zh for s in tax.slots},
        "emotions": {e: tax.emotion_zh.get(e, e) for e in tax.emotions},
        "dialects": {d.name: d.zh for d in tax.dialects},
        "queues": dict(policy.queues),
        "complaint_queue": policy.complaint_queue,
        "complaint_min_priority": policy.complaint_min_priority,
        "sla": {"resolve_hours": dict(policy.sla.resolve_hours),
                "escalations": {p: [{"after_hours": h, "to": to} for h, to in steps]
                                for p, steps in policy.sla.escalations.items()}},
    }


def mount(app: Any, require: Callable[[str], Any], runtime: Callable[[], Any]) -> None:
    """Add the console's routes to ``app`` (``require`` and ``runtime`` are serving/api.py's)."""
    from fastapi import Depends
    from fastapi.responses import FileResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")

    @app.get("/console", include_in_schema=False)
    async def console_page():
        # no-store: a new deployment's page (and its module URLs) is picked up at once
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-store"})

    @app.get("/console/", include_in_schema=False)
    async def console_slash():
        return RedirectResponse("/console", status_code=307)

    @app.get("/policy", summary="The loaded policy in brief: labels in Chinese, queues, required slots, SLA")
    async def policy(key=Depends(require("update_ticket"))):
        return {**policy_summary(runtime().policy), "role": key.role}
