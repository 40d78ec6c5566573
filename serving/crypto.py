"""Recordings and transcripts encrypted at rest, and the retention rule.

Keys come from the environment:

- ``HOTLINE_ENCRYPTION_KEYS``: comma-separated Fernet keys, the first the current one (it encrypts); the others only
  decrypt (key rotation: put a new key first, run :meth:`Cipher.rotate` over stored blobs, then drop the old key);
- ``HOTLINE_ENCRYPTION_KEY``: one Fernet key (used when ``HOTLINE_ENCRYPTION_KEYS`` is unset).

A Fernet key is the URL-safe base64 of 32 random bytes; make one with ``python -m serving.crypto genkey``. Fernet
(``cryptography``) is AES-128-CBC with an HMAC-SHA256 over the token, so a wrong key or a changed byte is detected,
never decrypted into garbage. Tokens are URL-safe base64 text (about 4/3 of the plaintext plus 57 bytes).

:func:`purge_due` is the retention rule: a recording is deleted once it is ``retention_days`` old.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

ENV_KEY = "HOTLINE_ENCRYPTION_KEY"
ENV_KEYS = "HOTLINE_ENCRYPTION_KEYS"
HOW_TO_MAKE_A_KEY = (f"make one with `python -m serving.crypto genkey` and set {ENV_KEY}=<key> (or {ENV_KEYS}=<new>,<old> "
                     "to rotate); keep it out of the repository")
TOKEN_PREFIX = b"gAAAAA"  # every Fernet token starts so (version byte 0x80, then the timestamp's high zero bytes)


class EncryptionKeyError(RuntimeError):
    """No usable key: missing where encryption is required, or not a Fernet key."""


class DecryptionError(ValueError):
    """A token that none of the keys opens: a wrong key, or data changed or not encrypted."""


def generate_key() -> str:
    """A new Fernet key (URL-safe base64 of 32 random bytes), as text for an environment variable."""
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str | bytes, where: str) -> Fernet:
    try:
        return Fernet(key.strip() if isinstance(key, (str, bytes)) else key)
    except (ValueError, TypeError) as e:
        raise EncryptionKeyError(f"{where} is not a Fernet key (URL-safe base64 of 32 bytes): {e}; "
                                 f"{HOW_TO_MAKE_A_KEY}") from None


class Cipher:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: str | bytes | Sequence[str | bytes]):
        if isinstance(keys, (str, bytes)):
            keys = [keys]
        keys = [k for k in keys if k and (k.strip() if isinstance(k, (str, bytes)) else k)]
        if not keys:
            raise EncryptionKeyError(f"no encryption key given; {HOW_TO_MAKE_A_KEY}")
        self._fernets = [_fernet(k, f"encryption key #{i + 1}") for i, k in enumerate(keys)]
        self._multi = MultiFernet(self._fernets)

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, required: bool = True) -> "Cipher | None":
        """The cipher of ``HOTLINE_ENCRYPTION_KEYS`` (comma-separated, first current) or ``HOTLINE_ENCRYPTION_KEY``.

        No key: :class:`EncryptionKeyError` saying how to make one when ``required``, else None (the caller stores
        plaintext and should say so at start-up). A malformed key is an error either way."""
        env = os.environ if env is None else env
        many = (env.get(ENV_KEYS) or "").strip()
        one = (env.get(ENV_KEY) or "").strip()
        if many:
            keys = [k.strip() for k in many.split(",") if k.strip()]
            where = ENV_KEYS
        elif one:
            keys, where = [one], ENV_KEY
        else:
            if required:
                raise EncryptionKeyError(f"encryption at rest is required but neither {ENV_KEY} nor {ENV_KEYS} is set; "
                                         f"{HOW_TO_MAKE_A_KEY}")
            return None
        try:
            return cls(keys)
        except EncryptionKeyError as e:
            raise EncryptionKeyError(f"{where}: {e}") from None

    def encrypt(self, data: bytes) -> bytes:
        """A Fernet token of ``data`` under the current key."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"encrypt takes bytes, got {type(data).__name__}; use encrypt_text for str")
        return self._multi.encrypt(bytes(data))

    def decrypt(self, token: bytes) -> bytes:
        """The plaintext of ``token``; :class:`DecryptionError` when no key opens it."""
        if isinstance(token, str):
            token = token.encode("ascii", errors="replace")
        try:
            return self._multi.decrypt(bytes(token))
        except InvalidToken:
            hint = ("it is not a Fernet token (stored before encryption was turned on?)"
                    if not looks_encrypted(token) else
                    f"none of the {self.key_count} key(s) opens it: a wrong or rotated-out key, or changed data")
            raise DecryptionError(f"cannot decrypt: {hint}; the keys come from {ENV_KEYS} / {ENV_KEY}") from None

    def encrypt_text(self, text: str) -> bytes:
        return self.encrypt(text.encode("utf-8"))

    def decrypt_text(self, token: bytes) -> str:
        return self.decrypt(token).decode("utf-8")

    def rotate(self, token: bytes) -> bytes:
        """``token`` re-encrypted under the current key (it may have been made with any of the keys)."""
        try:
            return self._multi.rotate(bytes(token))
        except InvalidToken:
            raise DecryptionError("cannot rotate: none of the keys opens this token") from None


def looks_encrypted(data: bytes | str) -> bool:
    """Whether ``data`` has the shape of a Fernet token (a cheap check for stores that hold plaintext from before
    encryption was turned on; only :meth:`Cipher.decrypt` proves it)."""
    if isinstance(data, str):
        data = data.encode("ascii", errors="replace")
    return bytes(data[:6]) == TOKEN_PREFIX


# -- retention ------------------------------------------------------------------------------------------------
def purge_due(recorded_at: datetime, retention_days: float | None, now: datetime) -> bool:
    """Whether a recording made at ``recorded_at`` is due for deletion at ``now``: it is ``retention_days`` old or
    older. ``retention_days`` None keeps recordings for ever; 0 makes everything due. Both datetimes must be aware."""
    for name, dt in (("recorded_at", recorded_at), ("now", now)):
        if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime, got {dt!r}")
    if retention_days is None:
        return False
    if retention_days < 0:
        raise ValueError(f"retention_days must be >= 0 (or None to keep for ever), got {retention_days}")
    return now - recorded_at >= timedelta(days=float(retention_days))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["genkey"]:
        print(generate_key())
        return 0
    print("usage: python -m serving.crypto genkey    # prints a new key for "
          f"{ENV_KEY} (or the first of {ENV_KEYS})", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
