"""Encryption at rest (serving/crypto.py): keys from the environment with clear errors, round trips, a wrong key
detected, key rotation with several keys, the genkey command, and the retention rule."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from serving.crypto import (ENV_KEY, ENV_KEYS, Cipher, DecryptionError, EncryptionKeyError, generate_key,
                            looks_encrypted, main, purge_due)

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_of_bytes_and_text():
    c = Cipher.from_env({ENV_KEY: generate_key()})
    audio = bytes(range(256)) * 40
    token = c.encrypt(audio)
    assert token != audio and audio not in token and looks_encrypted(token)
    assert c.decrypt(token) == audio
    t = c.encrypt_text("客户：我的手机号是13800138000")
    assert "13800138000".encode() not in t and c.decrypt_text(t) == "客户：我的手机号是13800138000"
    assert c.encrypt(audio) != token  # a fresh IV each time


def test_a_wrong_key_or_changed_data_is_a_clear_error():
    a, b = Cipher(generate_key()), Cipher(generate_key())
    token = a.encrypt(b"recording")
    with pytest.raises(DecryptionError, match="none of the 1 key"):
        b.decrypt(token)
    changed = token[:-5] + (b"A" if token[-5:-4] != b"A" else b"B") + token[-4:]
    with pytest.raises(DecryptionError):
        a.decrypt(changed)
    with pytest.raises(DecryptionError, match="not a Fernet token"):
        a.decrypt(b"RIFF....WAVEfmt plaintext from before")
    with pytest.raises(TypeError, match="encrypt_text"):
        a.encrypt("text")  # type: ignore[arg-type]


def test_a_missing_key_says_how_to_make_one():
    with pytest.raises(EncryptionKeyError, match=r"python -m serving\.crypto genkey") as e:
        Cipher.from_env({})
    assert ENV_KEY in str(e.value)
    assert Cipher.from_env({}, required=False) is None
    assert Cipher.from_env({ENV_KEY: "  "}, required=False) is None


def test_a_malformed_key_is_refused_naming_the_variable():
    with pytest.raises(EncryptionKeyError, match=f"{ENV_KEY}: encryption key #1 is not a Fernet key"):
        Cipher.from_env({ENV_KEY: "not-a-key"}, required=False)
    with pytest.raises(EncryptionKeyError, match=f"{ENV_KEYS}: encryption key #2"):
        Cipher.from_env({ENV_KEYS: f"{generate_key()},short"})


def test_key_rotation_with_several_keys_first_current():
    old, new = generate_key(), generate_key()
    before = Cipher.from_env({ENV_KEY: old})
    stored = before.encrypt(b"old recording")
    during = Cipher.from_env({ENV_KEYS: f"{new}, {old}", ENV_KEY: "ignored when KEYS is set"})
    assert during.key_count == 2 and during.decrypt(stored) == b"old recording"
    fresh = during.encrypt(b"new recording")
    assert Cipher(new).decrypt(fresh) == b"new recording"  # encrypted under the first key
    rotated = during.rotate(stored)
    after = Cipher.from_env({ENV_KEYS: new})
    assert after.decrypt(rotated) == b"old recording"
    with pytest.raises(DecryptionError):
        after.decrypt(stored)  # the old key was dropped after rotating


def test_genkey_prints_a_usable_key(capsys):
    assert main(["genkey"]) == 0
    key = capsys.readouterr().out.strip()
    assert Cipher(key).decrypt(Cipher(key).encrypt(b"x")) == b"x"
    assert main([]) == 2 and "genkey" in capsys.readouterr().err
    out = subprocess.run([sys.executable, "-m", "serving.crypto", "genkey"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert len(out) == 44 and out != key


def test_purge_due_after_the_retention_period():
    now = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    assert purge_due(now - timedelta(days=180), 180, now) is True  # exactly at the limit
    assert purge_due(now - timedelta(days=179, hours=23), 180, now) is False
    assert purge_due(now - timedelta(days=3650), None, now) is False  # keep for ever
    assert purge_due(now, 0, now) is True
    local = timezone(timedelta(hours=8))
    assert purge_due(datetime(2026, 6, 4, 20, tzinfo=local), 180, now) is True  # 2026-06-04 12:00 UTC
    with pytest.raises(ValueError, match="recorded_at must be an aware"):
        purge_due(datetime(2026, 1, 1), 30, now)
    with pytest.raises(ValueError, match="retention_days must be >= 0"):
        purge_due(now, -1, now)
