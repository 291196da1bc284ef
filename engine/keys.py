"""API keys for the HTTP API: created, listed and revoked over the owner-only Unix socket.

A key is ``lcm_<id>_<secret>``: ``id`` (8 hex digits) names it in lists, the audit log and
``keys revoke``; the secret is 256 random bits. Only the SHA-256 of the whole key is kept, in
``keys.json`` in the state folder (mode 0600, replaced whole by an atomic rename): a fast hash is
right for keys this random, where a slow one protects guessable passwords. Checking a key finds
its record by id and compares digests in constant time (``hmac.compare_digest``).

Scopes are ranked: ``admin`` implies ``write`` implies ``read``. Changes take effect at once;
``last_used`` is kept in memory and written at most every LAST_USED_WRITE seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from .errors import InvalidRequest, KeyStoreError, LacrimosaError, NoSuchKey

KEYS_NAME = "keys.json"  # in the state folder
SCOPES = ("read", "write", "admin")  # each implies the ones before it
KEY_PREFIX = "lcm_"
MAX_KEYS = 1000
MAX_NAME = 100  # characters of a key's name
LAST_USED_WRITE = 60.0  # seconds between writes of the file for last-used times alone


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One key's record (never the key itself)."""

    id: str
    name: str
    scope: str  # the highest scope; see ``scopes``
    created: float
    digest: str
    last_used: float | None = None

    @property
    def scopes(self) -> list[str]:
        return list(SCOPES[: SCOPES.index(self.scope) + 1])

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def to_dict(self) -> dict[str, Any]:
        """For lists and replies: everything but the digest."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": self.scopes,
            "created": self.created,
            "last_used": self.last_used,
        }


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


_NO_DIGEST = "-" * 64  # compared with when no key has the id: no hex digest equals it


def check_scope(scope: Any) -> str:
    if scope not in SCOPES:
        raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return str(scope)


class KeyStore:
    """The console's API keys. Thread-safe; the file is read on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] | None = None
        self._written = 0.0  # monotonic time of the last write
        self._dirty = False  # last-used times not yet written

    def _loaded(self) -> dict[str, ApiKey]:
        if self._keys is None:
            self._keys = self._read()
        return self._keys

    def _read(self) -> dict[str, ApiKey]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise KeyStoreError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise KeyStoreError(
                    f"{self.path}: refused: it must belong to you and be readable by you "
                    f"alone (mode 0600), it is mode {st.st_mode & 0o777:04o}"
                )
            try:
                entries = json.loads(f.read())
                keys = {}
                for entry in entries["keys"]:
                    key = ApiKey(
                        id=str(entry["id"]),
                        name=str(entry["name"]),
                        scope=check_scope(entry["scope"]),
                        created=float(entry["created"]),
                        digest=str(entry["digest"]),
                        last_used=entry.get("last_used"),
                    )
                    keys[key.id] = key
            except (ValueError, KeyError, TypeError, LacrimosaError) as exc:
                raise KeyStoreError(f"{self.path}: malformed: {exc}") from None
        return keys

    def _write(self) -> None:
        keys = self._loaded()
        data = json.dumps(
            {"keys": [dataclasses.asdict(k) for k in keys.values()]}, indent=1
        ).encode()
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._written, self._dirty = time.monotonic(), False

    # -- managing --------------------------------------------------------------------------------

    def create(self, scope: str, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself, which is not kept and cannot be shown again."""
        scope = check_scope(scope)
        name = (name or "").strip()
        if len(name) > MAX_NAME or not name.isprintable():
            raise InvalidRequest(f"a key's name is at most {MAX_NAME} printable characters")
        with self._lock:
            keys = self._loaded()
            if len(keys) >= MAX_KEYS:
                raise KeyStoreError(f"at most {MAX_KEYS} keys: revoke some first")
            key_id = secrets.token_hex(4)
            while key_id in keys:
                key_id = secrets.token_hex(4)
            secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            record = ApiKey(key_id, name or key_id, scope, round(time.time(), 3), _digest(secret))
            keys[key_id] = record
            self._write()
        return record, secret

    def list(self) -> list[ApiKey]:
        with self._lock:
            return sorted(self._loaded().values(), key=lambda k: k.created)

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            keys = self._loaded()
            record = keys.pop(key_id, None)
            if record is None:
                raise NoSuchKey(f"no such key: {key_id!r}")
            self._write()
        return record

    def is_live(self, key_id: str) -> bool:
        """Whether the key ``key_id`` still stands (not revoked; the file still trusted)."""
        with self._lock:
            try:
                return key_id in self._loaded()
            except KeyStoreError:
                return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded())

    # -- checking --------------------------------------------------------------------------------

    def authenticate(self, key: str) -> ApiKey | None:
        """The record of ``key`` if it is a live key, else None (and ``last_used`` updated)."""
        if not key.startswith(KEY_PREFIX):
            return None
        key_id = key[len(KEY_PREFIX) : len(KEY_PREFIX) + 8]
        digest = _digest(key)  # for unknown ids too: the time taken does not say which exist
        with self._lock:
            keys = self._loaded()
            record = keys.get(key_id)
            if not hmac.compare_digest(digest, record.digest if record else _NO_DIGEST):
                return None
            assert record is not None  # _NO_DIGEST matches no key's digest
            record = dataclasses.replace(record, last_used=round(time.time(), 3))
            keys[key_id] = record
            self._dirty = True
            if time.monotonic() - self._written >= LAST_USED_WRITE:
                self._write_quietly()
        return record

    def _write_quietly(self) -> None:
        # Last-used times are a convenience: a failed write is tried again on the next use.
        with contextlib.suppress(OSError):
            self._write()

    def close(self) -> None:
        """Write last-used times not yet written."""
        with self._lock:
            if self._dirty and self._keys is not None:
                self._write_quietly()
