"""Who may do what: the roles of API.md and the permission table the service checks before every action.

No SQL and no HTTP here: :mod:`serving.store` keeps the keys (only a SHA-256 of each secret) and this module says
what a verified key's role allows. Roles (API.md): ``platform`` routes calls, creates tickets and reads the tickets
it created; ``agent`` reads and updates tickets (phone numbers masked); ``supervisor`` is an agent who also sees
unmasked numbers and analytics; ``admin`` manages keys and policies (and nothing on tickets: an admin who works
tickets gets a second key with that role).
"""

from __future__ import annotations

import hashlib
import secrets

ROLES: tuple[str, ...] = ("platform", "agent", "supervisor", "admin")
SECRET_PREFIX = "hl_"  # every secret starts with this, so a leaked one is easy to grep for
PREFIX_LEN = 8  # characters of the secret kept in clear for listings ("hl_" + 5)

# action -> the roles allowed to do it
PERMISSIONS: dict[str, frozenset[str]] = {
    "route": frozenset({"platform"}),  # POST /route
    "models": frozenset({"platform", "agent", "supervisor"}),  # POST /transcribe, /analyze, /understand
    "create_ticket": frozenset({"platform"}),  # POST /tickets
    "read_ticket": frozenset({"platform", "agent", "supervisor"}),  # GET /tickets...; platform: only its own
    "update_ticket": frozenset({"agent", "supervisor"}),  # POST /tickets/{id}/events
    "read_unmasked": frozenset({"supervisor"}),  # callers' numbers in clear
    "analytics": frozenset({"supervisor"}),  # dashboards, reports
    "admin": frozenset({"admin"}),  # keys, policies
}
ACTIONS: tuple[str, ...] = tuple(PERMISSIONS)


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else a ValueError naming them."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def can(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action``. An unknown action is a programming error (ValueError), not a "no"."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}: the permission table knows {', '.join(ACTIONS)}")
    return role in PERMISSIONS[action]


def can_read_ticket(role: str, key_id: str | None, created_by_key: str | None) -> bool:
    """``read_ticket`` for one ticket: a platform key reads only the tickets it created."""
    if not can(role, "read_ticket"):
        return False
    if role == "platform":
        return key_id is not None and key_id == created_by_key
    return True


def new_secret() -> str:
    """A fresh API key secret: ``hl_`` + 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What the store keeps instead of the secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
