"""What the entry service holds while it runs: the store, the policy, the pipeline over the model services.

Kept apart from the BentoML class so the HTTP layer (``serving/api.py``) calls plain methods. The pipeline is
built on first use, once the model services have said which models they hold (``info``): an absent dialect or
emotion model is left out of the pipeline and reported as absent, never guessed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any, Mapping

from models.decisions import estimated_wait, link_earlier, load_policy, tier
from models.ticket import (
    Customer,
    RouteDecision,
    Ticket,
    build_ticket,
    content_hash,
    now_utc,
)
from serving.outbox import new_ticket_notifications
from serving.settings import Settings
from serving.store import new_ticket_id

log = logging.getLogger("hotline.service")
MODEL_NAMES = ("intent", "asr", "dialect", "emotion")  # what /readyz reports, in pipeline order
REQUIRED_MODELS = ("intent", "asr")  # the service is not ready without these


class BadInput(ValueError):
    """A request the service cannot use: the message says what was wrong and what to do (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 400, **extra: Any):
        super().__init__(message)
        self.status = status
        self.extra = extra


# a model service that is saturated or slow: the client should retry later (503), not report a fault
BUSY_ERRORS = frozenset({"ServiceUnavailable", "TimeoutError", "ReadTimeout", "ConnectTimeout", "PoolTimeout"})


class PipelineFailed(RuntimeError):
    """The pipeline failed on a call for a reason that is not the caller's (a model or a model service): the full
    message goes to the log; ``public`` (where it failed and the error's type, no caller data) goes to the client."""

    _HEAD = re.compile(r"^(?:(?P<stage>[a-z][a-z ]*): )?(?P<kind>[A-Za-z_][\w.]*)(?::|$)")

    def __init__(self, message: str):
        super().__init__(message)
        m = self._HEAD.match(message)
        self.stage, self.kind = (m.group("stage"), m.group("kind")) if m else (None, "error")
        self.public = f"{self.stage}: {self.kind}" if self.stage else self.kind


class Runtime:
    def __init__(self, settings: Settings, recognition: Any, analysis: Any, understanding: Any):
        from serving.store import Store

        self.settings = settings
        self.recognition, self.analysis, self.understanding = recognition, analysis, understanding
        from serving import logs
        from serving.crypto import Cipher

        logs.install()  # no phone number or order id unmasked in the logs (serving/logs.py)
        self.policy = load_policy(settings.policy_path)
        # recordings and transcripts encrypted at rest with HOTLINE_ENCRYPTION_KEY(S); without a key no audio is kept
        # and transcripts are stored in plaintext (said here and in /readyz "encryption")
        self.store = Store(settings.database_url, policy=self.policy, cipher=Cipher.from_env(required=False))
        if self.store.cipher is None:
            log.warning("no HOTLINE_ENCRYPTION_KEY: recordings are not stored, transcripts are stored in plaintext")
        self.store.upgrade()
        from serving.escalation import Clock, start_background

        # escalations and the outbox relay every HOTLINE_SCHEDULER_INTERVAL_S (0: off; cron runs them instead)
        self.clock = Clock.from_env()
        self.scheduler = start_background(self.store, self.clock)
        from serving.operations import start_background as start_operations

        # hotspot checks (HOTLINE_HOTSPOT_WINDOW) and the daily purge of recordings (serving/operations.py)
        self.operations = start_operations(self.store, self.clock)
        self.started = time.time()
        self.boot_id = uuid.uuid4().hex[:12]
        self._pipeline = None
        self._models: dict[str, Any] = {}
        self._absent: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._error: str | None = None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the background threads (scheduler, operations) and release the database's connections: the worker's
        shutdown hook. A tick in progress finishes first (up to ``timeout_s`` each); idempotent."""
        for name in ("scheduler", "operations"):
            thread = getattr(self, name, None)
            if thread is not None:
                thread.stop(timeout_s)
                setattr(self, name, None)
        self.store.close()

    # -- models ------------------------------------------------------------------------------------
    async def _load(self) -> None:
        """Ask each model service what it holds and build the pipeline over them (once)."""
        from models.pipeline import Pipeline
        from serving.adapters import RemoteDialect, RemoteEmotion, RemoteRecognizer, RemoteUnderstanding

        async with self._lock:
            if self._pipeline is not None:
                return
            infos: dict[str, Any] = {}
            for dep in (self.understanding, self.recognition, self.analysis):
                infos.update(await dep.to_async.info())
            models, absent = {}, {}
            for name in MODEL_NAMES:
                info = infos.get(name) or {"absent": "not reported by its service"}
                if "absent" in info:
                    absent[name] = str(info["absent"])
                else:
                    models[name] = {k: v for k, v in info.items() if k != "batches"}
            self._models, self._absent = models, absent
            self._pipeline = Pipeline(
                intent_model=RemoteUnderstanding(self.understanding),
                asr=RemoteRecognizer(self.recognition),
                dialect=(RemoteDialect(self.analysis, float(models["dialect"].get("min_confidence") or 0.0))
                         if "dialect" in models else None),
                emotion=RemoteEmotion(self.analysis) if "emotion" in models else None,
                policy=self.policy,
                customer_lookup=self.customer_profile,
                customer_products=self.customer_products,  # the caller's products lead the recogniser's hotwords
            )
            log.info("pipeline ready: models %s; absent %s", sorted(models), sorted(absent))

    async def pipeline(self):
        if self._pipeline is None:
            await self._load()
        return self._pipeline

    async def readiness(self) -> dict:
        """``{"ready", "models": {name: version info | {"absent": why}}, "database", "policy_version"}``."""
        try:
            await self._load()
            self._error = None
        except Exception as e:  # noqa: BLE001 - a model service not up yet, or a model failing to load
            self._error = f"{type(e).__name__}: {e}"
        models = {name: self._models.get(name) or {"absent": self._absent.get(name, "not loaded yet")}
                  for name in MODEL_NAMES}
        try:
            self.store.current_revision()
            database = "ok"
        except Exception as e:  # noqa: BLE001
            database = f"error: {type(e).__name__}: {e}"
        ready = self._pipeline is not None and database == "ok" and all(n in self._models for n in REQUIRED_MODELS)
        out = {"ready": ready, "models": models, "absent": sorted(self._absent), "database": database,
               "policy_version": self.policy.version, "uptime_s": round(time.time() - self.started, 1)}
        if self._pipeline is not None:
            out["batches"] = await self.batch_stats()
        out["scheduler"] = self.scheduler.status() if self.scheduler else {"running": False}
        from serving.operations import encryption_status

        out["operations"] = self.operations.status() if getattr(self, "operations", None) else {"running": False}
        out["encryption"] = encryption_status(self.store)
        if self._error:
            out["error"] = self._error
        return out

    async def batch_stats(self) -> dict:
        """Batch sizes the batched model services have seen so far (adaptive batching at work)."""
        stats: dict[str, Any] = {}
        for dep, name in ((self.recognition, "asr"), (self.understanding, "intent")):
            try:
                info = (await dep.to_async.info()).get(name) or {}
                stats[name] = info.get("batches")
            except Exception as e:  # noqa: BLE001 - readiness must answer even when a model service is down
                stats[name] = {"error": f"{type(e).__name__}: {e}"}
        return stats

    def model_versions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in MODEL_NAMES:
            info = self._models.get(name)
            out[name] = ({k: info[k] for k in ("version", "run_id") if k in info} if info
                         else {"absent": self._absent.get(name, "absent")})
        return out

    # -- customers ---------------------------------------------------------------------------------
    def customer_profile(self, caller: str | None) -> Customer | None:
        if not caller:
            return None
        return self.store.get_customer(str(caller))

    def customer_products(self, caller: str | None) -> list[str]:
        """The products (``product`` slot) of the caller's most recent tickets, newest first, without repeats: the
        first hotwords of the caller's next call (``Pipeline.hotwords_for``)."""
        from models.catalogue import MAX_CUSTOMER_HOTWORDS
        from serving.store import RECENT_TICKETS

        if not caller:
            return []
        tickets, _ = self.store.list_tickets(caller=str(caller), limit=RECENT_TICKETS)
        out: list[str] = []
        for t in tickets:
            product = (t.slots or {}).get("product")
            if product and product not in out:
                out.append(str(product))
        return out[:MAX_CUSTOMER_HOTWORDS]

    # -- one call ----------------------------------------------------------------------------------
    async def process(self, record: Mapping[str, Any]) -> dict:
        """The pipeline's prediction for one call or message; BadInput (422) when the audio is unusable."""
        pipe = await self.pipeline()
        pred = await pipe.aprocess(dict(record))
        if pred.get("error"):
            failed = PipelineFailed(str(pred["error"]))
            if failed.kind == "AudioError":  # the caller's audio (data.audio / models.pipeline raise it, and only for it)
                raise BadInput(f"the audio could not be used: {failed}", status=422)
            if failed.kind in BUSY_ERRORS or "overloaded" in str(failed) or "Too many requests" in str(failed):
                raise BadInput("the model services are busy; nothing was saved: retry after "
                               f"{self.settings.retry_after_s} s", status=503,
                               headers={"Retry-After": str(self.settings.retry_after_s)})
            raise failed
        return pred

    async def route(self, record: Mapping[str, Any], queue_state: Mapping[str, Any] | None) -> dict:
        pred = await self.process(record)
        customer = self.customer_profile(record.get("caller"))
        vip = bool(customer and customer.vip_level > 0)
        try:
            wait, offer, why = estimated_wait(pred["queue"], queue_state, self.policy, vip=vip)
        except ValueError as e:
            raise BadInput(str(e), status=422) from None
        reasons = list(pred.get("route_reasons") or ())
        if why:
            reasons.append(why)
        decision = RouteDecision(
            queue=pred["queue"], skill_group=pred.get("skill") or pred["queue"],
            dialect_group=pred.get("dialect_group") or self.policy.default_dialect_group,
            priority=pred["priority"], skip_ivr=bool(pred.get("skip_ivr", pred.get("is_complaint")
                                                                and self.policy.skip_ivr_for_complaints)),
            estimated_wait_s=wait, offer_callback=offer, rule=reasons[0] if reasons else "", reasons=reasons,
        )
        return {
            "transcript": pred.get("transcript"), "dialect": pred.get("dialect"),
            "dialect_confidence": pred.get("dialect_confidence"), "emotion": pred.get("emotion"),
            "emotion_confidence": pred.get("emotion_confidence"), "intent": pred["intent"],
            "intent_confidence": pred.get("intent_confidence"), "is_complaint": bool(pred.get("is_complaint")),
            "slots": pred.get("slots") or {}, "evidence": list(pred.get("complaint_evidence") or ()),
            "needs_review": pred.get("needs_review"), "route": decision.model_dump(),
            "customer": customer.model_dump() if customer else None,
            "policy_version": self.policy.version, "model_versions": self.model_versions(),
            "absent_models": sorted(self._absent),
        }

    async def create_ticket(self, *, call_id: str, record: dict, audio_bytes: bytes | None, text: str | None,
                            caller: str | None, channel: str, actor: Any,
                            agent: str | None = None) -> tuple[Ticket, bool]:
        """(ticket, created?) for a finished call: the same ticket on a retry with the same content. A call's
        quality check (``agent``: who took the call) and its recording (encrypted) are stored with the ticket."""
        from serving.operations import qa_record, with_qa
        from serving.store import Claim

        digest = content_hash(audio=audio_bytes, text=text, caller=caller, channel=channel)
        got = self.store.claim(call_id, digest, lease_s=self.settings.claim_lease_s)
        if not isinstance(got, Claim):
            return got, False
        try:
            pred = await self.process(record)
            customer = self.customer_profile(caller)
            order_id = (pred.get("slots") or {}).get("order_id")
            earlier = self.store.earlier_tickets(caller, order_id, exclude_call_id=call_id)
            linked, why = link_earlier(earlier, pred["intent"], order_id, pred.get("transcript") or text)
            level, tier_rule = tier(pred, customer, self.policy)
            ticket = build_ticket(
                pred, ticket_id=new_ticket_id(), call_id=call_id, channel=channel, caller=caller,
                created_at=now_utc(), customer=customer, linked_tickets=linked, link_reasons=why, policy=self.policy,
                model_versions=self.model_versions(), absent_models=sorted(self._absent), tier=level,
                tier_rule=tier_rule,
            )
            new_id = ticket.id
            qa = qa_record(ticket, agent)  # models.qa over the agent channel; stored in the ticket's transaction
            ticket = with_qa(ticket, qa)
            # P1 and tiered alerts go to the outbox in the ticket's own transaction
            ticket = self.store.finish(got, ticket, actor=getattr(actor, "name", str(actor)),
                                       created_by_key=getattr(actor, "id", None),
                                       notifications=new_ticket_notifications(ticket, self.policy, ticket.created_at),
                                       qa=qa, recording=audio_bytes)
            log.info("ticket %s created: %s %s, caller %s, order %s", ticket.id, channel, ticket.intent, caller,
                     ticket.slots.get("order_id"))  # serving/logs.py masks the numbers
        except BaseException:
            self.store.abandon(got)
            raise
        return ticket, ticket.id == new_id  # a racing twin may have stored the same call first: then 200
