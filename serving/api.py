"""The HTTP resources of ``../shared/API.md``: a FastAPI app mounted on the entry service.

Each handler: authenticate (``Authorization: Bearer <key>``), check the role, parse and bound the input, call the
runtime (pipeline, store), mask what the role may not see, audit ticket reads and changes, answer JSON (UTF-8,
Chinese as characters). Every error is ``{"error": "<what was wrong and what to do>"}`` with the status API.md names.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Optional

import bentoml
from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.ticket import CHANNELS, EVENT_TYPES, Ticket, masked
from serving.runtime import BadInput, PipelineFailed

log = logging.getLogger("hotline.api")
AUDIO_TYPES = ("audio/", "application/octet-stream")  # upload content types taken as audio (the bytes decide)
MAX_CALL_ID_CHARS = 128  # characters of a call_id


class UTF8JSONResponse(JSONResponse):
    """JSON with Chinese as characters, not ``\\u`` escapes (API.md)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


app = FastAPI(
    title="hotline",
    version="1",
    description="Routing and auto-ticketing for Chinese customer-service hotline calls (../shared/API.md).",
    default_response_class=UTF8JSONResponse,
)


def error(status: int, message: str, headers: dict | None = None, **extra: Any) -> UTF8JSONResponse:
    return UTF8JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


# -- errors ------------------------------------------------------------------------------------------
@app.exception_handler(BadInput)
async def _bad_input(_: Request, exc: BadInput):
    return error(exc.status, str(exc), headers=exc.extra.pop("headers", None), **exc.extra)


@app.exception_handler(RequestValidationError)
async def _invalid(_: Request, exc: RequestValidationError):
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return error(422, "invalid request: " + "; ".join(parts) + ". See GET /docs for the fields each endpoint takes.")


@app.exception_handler(StarletteHTTPException)
async def _http(_: Request, exc: StarletteHTTPException):
    msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
    if exc.status_code == 404 and msg == "Not Found":
        msg = "no such endpoint; see GET /docs for the endpoints of the hotline service"
    if exc.status_code == 405:
        msg = f"method not allowed here ({msg}); see GET /docs"
    return error(exc.status_code, msg, headers=getattr(exc, "headers", None))


def _store_errors() -> None:
    """Answers for the store's refusals: registered one by one so they are handled like HTTP errors (not as
    server errors, which Starlette re-raises after answering)."""
    from serving.store import CreationInFlight, IdempotencyConflict, InvalidTransition, NotFound

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(_: Request, exc: IdempotencyConflict):
        return error(422, str(exc))

    @app.exception_handler(CreationInFlight)
    async def _in_flight(_: Request, exc: CreationInFlight):
        wait = max(1, int(round(getattr(exc, "retry_after_s", 5) or 5)))
        return error(409, str(exc), headers={"Retry-After": str(wait)})

    @app.exception_handler(InvalidTransition)
    async def _transition(_: Request, exc: InvalidTransition):
        return error(409, str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound):
        return error(404, str(exc))


_store_errors()


@app.exception_handler(PipelineFailed)
async def _pipeline_failed(request: Request, exc: PipelineFailed):
    log.error("the pipeline failed in %s %s: %s", request.method, request.url.path, exc)
    return error(500, f"internal error ({exc.public}); nothing was saved for this request. Retry, and if it persists "
                      f"report it with the time of the request")


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception):
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error(500, f"internal error ({type(exc).__name__}); nothing was saved for this request. Retry, and if it "
                      f"persists report it with the time of the request")


# -- auth ----------------------------------------------------------------------------------------------
def runtime():
    return bentoml.get_current_service().runtime


def authenticate(authorization: Optional[str] = Header(None)):
    if not authorization:
        raise BadInput("missing API key: send `Authorization: Bearer <key>` (create one with "
                       "`hotline keys create --role platform`)", status=401, headers={"WWW-Authenticate": "Bearer"})
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise BadInput("malformed Authorization header: use `Authorization: Bearer <key>`", status=401,
                       headers={"WWW-Authenticate": "Bearer"})
    key = runtime().store.verify_key(secret.strip())
    if key is None:
        raise BadInput("unknown or revoked API key; ask an admin for a key (`hotline keys create`)", status=401,
                       headers={"WWW-Authenticate": "Bearer"})
    return key


def require(action: str):
    from serving.auth import can

    def check(key=Depends(authenticate)):
        if not can(key.role, action):
            raise BadInput(f"the role {key.role!r} may not {action.replace('_', ' ')}; use a key with a role that may "
                           f"(see API.md: roles)", status=403)
        return key

    return check


def view(ticket: Ticket, key: Any) -> dict:
    """The ticket as ``key``'s role may see it (phone numbers masked for all but supervisor)."""
    from serving.auth import can

    if can(key.role, "read_unmasked"):
        return ticket.model_dump(mode="json", exclude_none=False)
    out = masked(ticket).model_dump(mode="json", exclude_none=False)
    if out.get("events"):  # what agents wrote in comments and notes ("回电13812345678") is masked too
        out["events"] = [{**e, "data": _mask_words(e.get("data"))} for e in out["events"]]
    return out


def _mask_words(value: Any) -> Any:
    """Mobile numbers masked in every string of a JSON value (event data)."""
    from models.ticket import mask_text

    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_words(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_words(v) for v in value]
    return value


# -- input -----------------------------------------------------------------------------------------
def _channel(channel: Optional[str]) -> str:
    channel = (channel or "phone").strip()
    if channel not in CHANNELS:
        raise BadInput(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}", status=422)
    return channel


def _caller(caller: Optional[str]) -> Optional[str]:
    if caller is None or not caller.strip():
        return None
    c = caller.strip().replace(" ", "").replace("-", "")
    if c.startswith("+86"):
        c = c[3:]
    if not c.isdigit() or not 5 <= len(c) <= 20:
        raise BadInput(f"caller {mask_for_error(caller)!r} is not a phone number: send 5 to 20 digits "
                       f"(a leading +86 is accepted)", status=422)
    return c


def mask_for_error(value: str) -> str:
    from models.ticket import mask_phone

    return mask_phone(value) or ""


async def _audio(upload: Optional[UploadFile], max_seconds: float) -> tuple[bytes, Any]:
    """(bytes, (channels, samples) float32 at 16 kHz) of an upload, bounded in size and length."""
    import asyncio

    from data.audio import SAMPLE_RATE, AudioError, load_audio_bytes

    rt = runtime()
    limit = rt.settings.max_upload_bytes
    ctype = (upload.content_type or "application/octet-stream").lower()
    if not ctype.startswith(AUDIO_TYPES):
        raise BadInput(f"`audio` was sent as {ctype}; send the recording as an audio file (audio/wav, audio/flac, "
                       f"audio/mpeg or application/octet-stream)", status=415)
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"`audio` is larger than {rt.settings.max_upload_mb:g} MiB; send a shorter recording or raise "
                       f"HOTLINE_MAX_UPLOAD_MB", status=413)
    name = upload.filename or "audio"
    try:
        audio = await asyncio.to_thread(load_audio_bytes, data, SAMPLE_RATE, False, name, allow_silent=True)
    except AudioError as e:
        raise BadInput(f"the audio could not be used: {e}", status=422) from None
    seconds = audio.shape[-1] / SAMPLE_RATE
    if seconds > max_seconds:
        raise BadInput(f"`audio` is {seconds:.0f} s long; at most {max_seconds:g} s is accepted here (raise "
                       f"HOTLINE_MAX_CALL_SECONDS / HOTLINE_MAX_ROUTE_SECONDS)", status=413)
    from data.audio import is_silent

    if all(is_silent(ch) for ch in audio):
        raise BadInput(f"{name}: the recording is silent on every channel; check the recording", status=422)
    return data, audio


def _text(text: Optional[str]) -> Optional[str]:
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise BadInput("`text` is empty; send the message's words, or `audio` instead", status=422)
    limit = runtime().settings.max_text_chars
    if len(text) > limit:
        raise BadInput(f"`text` has {len(text)} characters; at most {limit} are accepted (HOTLINE_MAX_TEXT_CHARS)",
                       status=413)
    return text


def _json_field(raw: Optional[str], name: str) -> Any:
    if raw is None or raw == "":
        return None
    limit = runtime().settings.max_json_bytes
    if len(raw.encode("utf-8")) > limit:
        raise BadInput(f"`{name}` is larger than {limit} bytes (HOTLINE_MAX_JSON_BYTES)", status=413)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadInput(f"`{name}` is not valid JSON ({e.msg} at character {e.pos}); send an object like "
                       f'{{"complaint": {{"waiting": 3, "free_agents": 1, "agents": 4}}}}', status=400) from None
    if not isinstance(value, dict):
        raise BadInput(f"`{name}` must be a JSON object, got {type(value).__name__}", status=422)
    return value


async def _record(audio: Optional[UploadFile], text: Optional[str], caller: Optional[str], max_seconds: float,
                  rid: str) -> tuple[dict, Optional[bytes], Optional[str]]:
    if audio is not None and text is not None:
        raise BadInput("send either `audio` or `text`, not both", status=400)
    if audio is None and text is None:
        raise BadInput("send the call as `audio` (a file) or the message as `text`", status=400)
    if audio is not None:
        data, samples = await _audio(audio, max_seconds)
        return {"id": rid, "audio": samples, "caller": caller}, data, None
    t = _text(text)
    return {"id": rid, "text": t, "caller": caller}, None, t


# -- endpoints ------------------------------------------------------------------------------------------
@app.post("/route", summary="Where a call goes, while the caller is still in the IVR")
async def route(
    audio: Optional[UploadFile] = File(None, description="the caller's first utterance, any rate, mono"),
    text: Optional[str] = Form(None, description="a chat message instead of audio"),
    caller: Optional[str] = Form(None),
    channel: Optional[str] = Form("phone"),
    queue_state: Optional[str] = Form(None, description='JSON: {"queue": {"waiting": n, "free_agents": m, "agents": k}}'),
    key=Depends(require("route")),
):
    rt = runtime()
    channel, caller = _channel(channel), _caller(caller)
    state = _json_field(queue_state, "queue_state")
    record, _, _ = await _record(audio, text, caller, rt.settings.max_route_seconds, "route")
    out = await rt.route(record, state)
    from serving.auth import can

    if not can(key.role, "read_unmasked"):
        from models.ticket import mask_phone, mask_text

        if out["slots"].get("phone"):
            out["slots"]["phone"] = mask_phone(out["slots"]["phone"])
        if out.get("transcript"):
            out["transcript"] = mask_text(out["transcript"])
        if out.get("customer"):
            out["customer"]["phone"] = mask_phone(out["customer"]["phone"])
    out["channel"] = channel
    return out


@app.post("/tickets", status_code=201, summary="A finished call (or message) becomes a ticket")
async def create_ticket(
    call_id: Optional[str] = Form(None, description="the idempotency key: the platform's id of the call"),
    audio: Optional[UploadFile] = File(None, description="stereo (channel 0 agent, 1 customer) or mono"),
    text: Optional[str] = Form(None),
    caller: Optional[str] = Form(None),
    channel: Optional[str] = Form("phone"),
    agent: Optional[str] = Form(None, description="the agent who took the call (for its quality check)"),
    key=Depends(require("create_ticket")),
    request: Request = None,
):
    rt = runtime()
    ctype = (request.headers.get("content-type", "") if request is not None else "").lower()
    if ctype and not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise BadInput(f"POST /tickets takes multipart/form-data (fields call_id, audio or text, caller, channel), "
                       f"not {ctype.split(';')[0]}", status=415)
    if call_id is None or not call_id.strip():
        raise BadInput("`call_id` is required: the platform's id of the call, used to make retries safe", status=422)
    call_id = call_id.strip()
    if len(call_id) > MAX_CALL_ID_CHARS:
        raise BadInput(f"`call_id` is longer than {MAX_CALL_ID_CHARS} characters", status=422)
    channel, caller = _channel(channel), _caller(caller)
    record, data, t = await _record(audio, text, caller, rt.settings.max_call_seconds, call_id)
    if t is not None:  # email (raw RFC 822: its sender is the caller if none is given), chat, WeChat
        from serving.operations import message_record

        try:
            record["text"], caller = message_record(channel, t, caller)
        except ValueError as e:
            raise BadInput(str(e), status=422) from None
        record["caller"] = caller
    ticket, created = await rt.create_ticket(call_id=call_id, record=record, audio_bytes=data, text=t, caller=caller,
                                             channel=channel, actor=key, agent=(agent or "").strip()[:200] or None)
    rt.store.audit(key, "create_ticket" if created else "read_ticket", ticket.id, "created" if created else "retry")
    return UTF8JSONResponse(view(ticket, key), status_code=201 if created else 200)


@app.get("/tickets/{ticket_id}", summary="A ticket with its full history of events")
async def get_ticket(ticket_id: str, key=Depends(require("read_ticket"))):
    rt = runtime()
    ticket = rt.store.get_ticket(ticket_id, with_events=True)
    if ticket is None or not _may_see(key, ticket):
        raise BadInput(f"no ticket {ticket_id!r}; list tickets with GET /tickets", status=404)
    rt.store.audit(key, "read_ticket", ticket.id)
    return view(ticket, key)


@app.get("/tickets", summary="Tickets, newest first, paginated")
async def list_tickets(
    status: Optional[str] = Query(None),
    priority: Optional[str] = Query(None),
    intent: Optional[str] = Query(None),
    caller: Optional[str] = Query(None),
    since: Optional[datetime] = Query(None),
    until: Optional[datetime] = Query(None),
    limit: int = Query(50, ge=1, le=200),
    cursor: Optional[str] = Query(None),
    overdue: Optional[bool] = Query(None, description="true: unfinished tickets past sla.due_at or escalated"),
    key=Depends(require("read_ticket")),
):
    from models.decisions import PRIORITIES
    from models.ticket import TRANSITIONS

    rt = runtime()
    if status is not None and status not in TRANSITIONS:
        raise BadInput(f"unknown status {status!r}: use one of {', '.join(TRANSITIONS)}", status=422)
    if priority is not None and priority not in PRIORITIES:
        raise BadInput(f"unknown priority {priority!r}: use one of {', '.join(PRIORITIES)}", status=422)
    if intent is not None and intent not in rt.policy.taxonomy.intent_names:
        raise BadInput(f"unknown intent {intent!r}: use one of {', '.join(rt.policy.taxonomy.intent_names)}",
                       status=422)
    created_by = key.id if key.role == "platform" else None
    try:
        tickets, next_cursor = rt.store.list_tickets(status=status, priority=priority, intent=intent,
                                                     caller=_caller(caller), since=since, until=until, limit=limit,
                                                     cursor=cursor, created_by_key=created_by, overdue=overdue,
                                                     now=rt.clock.now())
    except ValueError as e:
        raise BadInput(str(e), status=422) from None
    rt.store.audit(key, "list_tickets", None, f"{len(tickets)} tickets")
    return {"tickets": [view(t, key) for t in tickets], "next_cursor": next_cursor}


@app.post("/tickets/{ticket_id}/events", summary="Assign, comment, escalate, resolve, close, reopen, rate")
async def add_event(ticket_id: str, request: Request, key=Depends(authenticate)):
    from serving.auth import can

    rt = runtime()
    if not can(key.role, "update_ticket") and key.role != "platform":  # a platform key may post satisfaction only
        raise BadInput(f"the role {key.role!r} may not update ticket; use a key with a role that may (see API.md: "
                       f"roles)", status=403)
    body = await request.body()
    if len(body) > rt.settings.max_json_bytes:
        raise BadInput(f"the body is larger than {rt.settings.max_json_bytes} bytes (HOTLINE_MAX_JSON_BYTES)",
                       status=413)
    try:
        event = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput('the body is not valid JSON; send e.g. {"type": "comment", "text": "..."}', status=400) from None
    if not isinstance(event, dict) or "type" not in event:
        raise BadInput('send a JSON object with a `type`, e.g. {"type": "assign", "assignee": "agent-7"}', status=422)
    etype = event.pop("type")
    if etype not in EVENT_TYPES:
        raise BadInput(f"unknown event type {etype!r}: use one of {', '.join(EVENT_TYPES)}", status=422)
    if not can(key.role, "update_ticket") and etype != "satisfaction":
        raise BadInput(f"the role {key.role!r} may only post the customer's score ({{\"type\": \"satisfaction\", "
                       f"\"score\": 1..5}}) on its own tickets", status=403)
    ticket = rt.store.get_ticket(ticket_id, with_events=False)
    if ticket is None or not _may_see(key, ticket):
        raise BadInput(f"no ticket {ticket_id!r}; list tickets with GET /tickets", status=404)
    try:
        ticket = rt.store.add_event(ticket_id, etype, key.name, event)
    except ValueError as e:
        from serving.store import InvalidTransition

        if isinstance(e, InvalidTransition):
            raise
        raise BadInput(str(e), status=422) from None
    rt.store.audit(key, f"event:{etype}", ticket_id)
    if etype == "resolve":
        import asyncio

        await asyncio.to_thread(_kb_resolved, ticket_id)
    return view(ticket, key)


@app.get("/admin/outbox", summary="Notifications by state (parked: given up after max attempts)")
async def admin_outbox(state: str = Query("parked", description="pending, parked, delivered or all"),
                       kind: Optional[str] = Query(None), limit: int = Query(100, ge=1, le=1000),
                       key=Depends(require("admin"))):
    rt = runtime()
    try:
        items = rt.store.list_outbox(state, limit=limit, kind=kind)
    except ValueError as e:
        raise BadInput(str(e), status=422) from None
    rt.store.audit(key, "outbox.list", None, f"{state}: {len(items)} rows")
    return {"outbox": [i.as_dict() for i in items]}


@app.post("/admin/outbox/{outbox_id}/retry", summary="Put a parked notification back in the delivery queue")
async def admin_outbox_retry(outbox_id: int, key=Depends(require("admin"))):
    rt = runtime()
    try:
        item = rt.store.retry_outbox(outbox_id, now=rt.clock.now())
    except ValueError as e:
        raise BadInput(str(e), status=409) from None
    rt.store.audit(key, "outbox.retry", item.ticket_id, f"outbox {item.id} {item.kind}")
    return item.as_dict()


@app.post("/transcribe", summary="Audio to segments with channel and timestamps")
async def transcribe(audio: UploadFile = File(...), key=Depends(require("models"))):
    rt = runtime()
    record, _, _ = await _record(audio, None, None, rt.settings.max_call_seconds, "transcribe")
    pred = await rt.process(record)
    segments = pred.get("segments") or []
    return {"segments": _mask_segments(segments, key), "dialect": pred.get("dialect"),
            "channel_layout": pred.get("channel_layout"), "model_versions": rt.model_versions()}


@app.post("/analyze", summary="Audio to dialect and emotion with confidences")
async def analyze(audio: UploadFile = File(...), key=Depends(require("models"))):
    rt = runtime()
    record, _, _ = await _record(audio, None, None, rt.settings.max_call_seconds, "analyze")
    pred = await rt.process(record)
    return {"dialect": pred.get("dialect"), "dialect_confidence": pred.get("dialect_confidence"),
            "emotion": pred.get("emotion"), "emotion_confidence": pred.get("emotion_confidence"),
            "emotion_trajectory": pred.get("emotion_trajectory") or [], "absent_models": sorted(rt._absent),
            "model_versions": rt.model_versions()}


@app.post("/understand", summary="Text to intent, complaint, slots and evidence")
async def understand(request: Request, key=Depends(require("models"))):
    rt = runtime()
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = await request.body()
        if len(body) > rt.settings.max_json_bytes:
            raise BadInput(f"the body is larger than {rt.settings.max_json_bytes} bytes", status=413)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput('the body is not valid JSON; send {"text": "..."}', status=400) from None
        raw = payload.get("text") if isinstance(payload, dict) else None
    else:
        form = await request.form()
        raw = form.get("text")
    if not isinstance(raw, str):
        raise BadInput('send the words as `text` (JSON {"text": "..."} or a form field)', status=422)
    text = _text(raw)
    pred = await rt.process({"id": "understand", "text": text})
    out = {k: pred.get(k) for k in ("intent", "intent_confidence", "is_complaint", "complaint_confidence", "slots",
                                    "missing_slots", "needs_review", "review_reasons")}
    out["evidence"] = list(pred.get("complaint_evidence") or ())
    from serving.auth import can

    if not can(key.role, "read_unmasked") and (out["slots"] or {}).get("phone"):
        from models.ticket import mask_phone

        out["slots"]["phone"] = mask_phone(out["slots"]["phone"])
    return out


@app.get("/customers/{phone}", summary="A customer's profile and earlier tickets")
async def customer(phone: str, key=Depends(require("read_ticket"))):
    rt = runtime()
    c = rt.customer_profile(_caller(phone))
    if c is None:
        raise BadInput("no customer with that number; import customers with `hotline customers import FILE.csv`",
                       status=404)
    from serving.auth import can
    from models.ticket import mask_phone

    out = c.model_dump(mode="json")
    if not can(key.role, "read_unmasked"):
        out["phone"] = mask_phone(out["phone"])
    return out


# -- the web console (GET /console, its static files, GET /policy): serving/console/ --------------------------
from serving.console import mount as _mount_console  # noqa: E402

_mount_console(app, require, runtime)


# -- ticket operations: POST /qa, GET /analytics/qa|hotspots|csat (serving/ops_api.py) -----------------------------
from serving.ops_api import mount as _mount_operations  # noqa: E402

_mount_operations(app, require, lambda: runtime())


# -- live streams and the knowledge base (serving/stream.py, models/kb.py; README "Live streams") ----------------
@app.websocket("/stream")
async def stream(ws: WebSocket):
    from serving.stream import stream_endpoint

    await stream_endpoint(ws)


@app.websocket("/stream/{call_id}/watch")
async def watch_stream(ws: WebSocket, call_id: str):
    from serving.stream import watch_endpoint

    await watch_endpoint(ws, call_id)


@app.get("/live", summary="The calls streaming now, with their dialect, emotion, alerts and intent")
async def live(key=Depends(require("update_ticket"))):
    from serving.stream import live_calls

    return {"calls": live_calls(key.role)}


@app.get("/assist", summary="Knowledge-base suggestions for a ticket")
async def assist(ticket: str = Query(..., description="the ticket's id"), k: int = Query(3, ge=1, le=10),
                 key=Depends(require("update_ticket"))):
    import asyncio

    from serving.stream import knowledge_base

    rt = runtime()
    t = rt.store.get_ticket(ticket, with_events=False)
    if t is None or not _may_see(key, t):
        raise BadInput(f"no ticket {ticket!r}; list tickets with GET /tickets", status=404)
    kb = knowledge_base(rt)
    if kb is None:
        raise BadInput(f"the knowledge base is not loaded ({getattr(rt, '_kb_error', '?')}); check HOTLINE_KB_DIR",
                       status=503, headers={"Retry-After": str(rt.settings.retry_after_s)})
    words = " ".join(s.text for s in t.transcript if s.channel != "agent") or (t.text or "")
    hits = await asyncio.to_thread(kb.search, f"{t.summary} {words}", k + 1, t.intent)
    hits = [h for h in hits if h["id"] != f"ticket:{t.id}"][:k]
    return {"ticket": t.id, "intent": t.intent,
            "articles": [{x: h[x] for x in ("id", "title", "snippet", "score", "kind")} for h in hits]}


def _kb_resolved(ticket_id: str) -> None:
    """A resolved ticket joins the knowledge base (its summary and resolution comment)."""
    from serving.stream import knowledge_base

    rt = runtime()
    kb = knowledge_base(rt)
    if kb is not None:
        try:
            kb.add_ticket(rt.store.get_ticket(ticket_id, with_events=True))
        except Exception:  # noqa: BLE001 - the event is saved; a missed index update is logged, not an error
            log.exception("knowledge base: ticket %s not indexed", ticket_id)


def _may_see(key: Any, ticket: Ticket) -> bool:
    """Platforms read only the tickets they created; other roles read all."""
    if key.role != "platform":
        return True
    return runtime().store.ticket_owner(ticket.id) == key.id


def _mask_segments(segments: list, key: Any) -> list:
    from serving.auth import can
    from models.ticket import mask_text

    if can(key.role, "read_unmasked"):
        return segments
    return [{**s, "text": mask_text(s.get("text", ""))} for s in segments]


# -- middleware: /readyz with details, Retry-After on overload --------------------------------------------
class readiness_middleware:  # noqa: N801 - BentoML takes the class itself
    """Outermost of our layers on the entry service:

    - ``GET /readyz`` answers JSON details (models present or absent, database, policy): 200 when ready, else 503.
    - Admission: at most ``HOTLINE_MAX_CONCURRENCY`` API requests at once; beyond that 429 with ``Retry-After`` at
      once (BentoML's own ``traffic.max_concurrency``, set higher as a hard cap, answers 429 without the header).
      Health and metrics paths are never refused.
    - 503 answers from below (adaptive batching that cannot meet its latency) get a ``Retry-After`` header too.
    """

    UNLIMITED = ("/livez", "/healthz", "/readyz", "/metrics")

    def __init__(self, app: Any, limit: int | None = None, retry_after_s: int | None = None):
        from serving.settings import Settings

        settings = Settings.from_env()
        self.app = app
        self.limit = limit or settings.max_concurrency
        self.retry_after = str(retry_after_s or settings.retry_after_s)
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):  # an open WebSocket (/stream) holds a slot too
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket" and self.in_flight >= self.limit:  # accept, say why, close 1013 (try later)
            if (await receive()).get("type") == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": json.dumps(
                    {"type": "error", "seq": 0, "t": 0, "error": f"the service is busy ({self.limit} requests and "
                     f"streams in progress); retry after {self.retry_after} s"}, ensure_ascii=False)})
                await send({"type": "websocket.close", "code": 1013})
            return
        path = scope.get("path", "")
        if path == "/readyz" and scope.get("method") == "GET":
            try:
                details = await bentoml.get_current_service().runtime.readiness()
            except Exception as e:  # noqa: BLE001 - not started yet
                details = {"ready": False, "error": f"{type(e).__name__}: {e}"}
            status = 200 if details.get("ready") else 503
            headers = None if status == 200 else {"Retry-After": self.retry_after}
            await UTF8JSONResponse(details, status_code=status, headers=headers)(scope, receive, send)
            return
        if path in self.UNLIMITED:
            await self._guarded(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            resp = error(429, f"the service is busy ({self.limit} requests in progress); retry after "
                              f"{self.retry_after} s", headers={"Retry-After": self.retry_after})
            await resp(scope, receive, send)
            return
        self.in_flight += 1

        async def send_with_retry_after(message: dict) -> None:
            if message.get("type") == "http.response.start" and message.get("status") in (429, 503):
                headers = list(message.get("headers") or [])
                if not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", self.retry_after.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_retry_after)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: dict, receive: Any, send: Any) -> None:
        """``self.app``, but an HTTP request that fails before answering gets a JSON 500 at once: BentoML's timeout
        layer above us would otherwise hold it until HOTLINE_TIMEOUT_S and then drop it (a hang, not an error), e.g.
        GET /metrics where Prometheus' multiprocess directory is missing."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started, plain = False, 0  # plain: the status of a text/plain 404/405 from BentoML's own router

        async def tracking_send(message: dict) -> None:
            nonlocal started, plain
            if message.get("type") == "http.response.start":
                started = True
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                if message.get("status") in (404, 405) and ctype.startswith(b"text/plain"):
                    plain = message["status"]  # a path none of our routes match: answer JSON instead
                    return
            if plain:
                if message.get("type") == "http.response.body" and not message.get("more_body"):
                    msg = ("no such endpoint; see GET /docs for the endpoints of the hotline service" if plain == 404
                           else f"method {scope.get('method')} not allowed on {scope.get('path')}; see GET /docs")
                    await error(plain, msg)(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # noqa: BLE001 - answered, logged with its traceback
            if started:
                raise
            log.exception("unanswered error in %s %s", scope.get("method"), scope.get("path"))
            await error(500, f"internal error ({type(e).__name__}) in {scope.get('path')}; nothing was saved for "
                             f"this request. Retry, and if it persists report it with the time of the request"
                        )(scope, receive, send)
