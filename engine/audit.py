"""The audit log: one append-only record of every control action, from every client.

Each action (start, stop, restart, shutdown, key creation and revocation, a refused HTTP request)
becomes one line of canonical JSON in ``audit.log`` in the state folder (mode 0600)::

    {"action":"restart","actor":{"source":"cli","uid":1000},"args":{},"detail":"restarted",
     "hash":"…","outcome":"ok","prev":"…","seq":7,"target":"api","time":1764590000.123}

``hash`` is the SHA-256 of ``prev`` and the record's other fields, ``prev`` the hash of the record
before (``GENESIS`` for the first): a record edited by hand no longer matches its hash, and one
removed or moved breaks the chain at the next, so :meth:`AuditLog.verify` says which. (It is
tamper-evident, not tamper-proof: who can write the file can rewrite the whole chain; ``status``
shows the newest hash and count, which a watcher can keep elsewhere.)

One ``write`` per record on an O_APPEND descriptor: a crash (``kill -9``) loses at most the record
being written. A torn last line is cut off when the log is opened again, and appending goes on
from the last whole record; earlier records are never rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConsoleError, LacrimosaError

AUDIT_NAME = "audit.log"  # in the state folder
GENESIS = "0" * 64  # the ``prev`` of the first record
MAX_ARGS_BYTES = 4096  # a record's arguments beyond this are replaced by their size
MAX_RECORDS = 10_000  # the most records one read returns
READ_CHUNK = 64 << 10  # the newest records are read backwards from the end in pieces of this


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who asked for an action, and through what: ``source`` is ``tui``, ``cli``, ``http``, or
    ``console`` (the console itself: a signal, a crash of its own)."""

    source: str
    uid: int | None = None  # the local user, for the socket and the TUI
    key_id: str | None = None  # the API key, for HTTP
    key_name: str | None = None

    @classmethod
    def local(cls, source: str, uid: int | None = None) -> Actor:
        return cls(source, os.getuid() if uid is None else uid)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


CONSOLE = Actor("console")


@dataclasses.dataclass(frozen=True)
class AuditCheck:
    """What :meth:`AuditLog.verify` found: how many records, and each problem with its record."""

    records: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _digest(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256((prev + _canonical(body)).encode()).hexdigest()


def _bounded(args: dict[str, Any]) -> dict[str, Any]:
    size = len(_canonical(args))
    return args if size <= MAX_ARGS_BYTES else {"truncated": True, "bytes": size}


class AuditLog:
    """The append-only, hash-chained log of actions. Thread-safe. The file is opened on first use
    (the state folder may not exist before the console starts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seq = 0
        self._head = GENESIS
        self.torn = 0  # torn last lines cut off at opening (a crash in the middle of a write)
        self.write_errors = 0  # records that could not be written (disk full, …)
        self.last_error: str | None = None

    # -- writing ---------------------------------------------------------------------------------

    def record(
        self,
        actor: Actor,
        action: str,
        target: str | None = None,
        args: dict[str, Any] | None = None,
        outcome: str = "ok",
        detail: str | None = None,
    ) -> dict[str, Any]:
        """Append one record and return it. ``outcome`` is ``ok`` or the error code. A failed
        write is counted (``write_errors``, shown in status), never raised: the action it
        describes has already happened."""
        with self._lock:
            try:
                fd = self._open()  # first: opening finds where the chain goes on
            except OSError as exc:
                return self._failed(exc, {"action": action, "target": target})
            body: dict[str, Any] = {
                "seq": self._seq + 1,
                "time": round(time.time(), 3),
                "actor": actor.to_dict(),
                "action": action,
                "target": target,
                "args": _bounded(args or {}),
                "outcome": outcome,
            }
            if detail is not None:
                body["detail"] = detail
            record = {**body, "prev": self._head, "hash": _digest(self._head, body)}
            try:
                self._write(fd, (_canonical(record) + "\n").encode())
            except OSError as exc:
                return self._failed(exc, record)
            self._seq += 1
            self._head = record["hash"]
            return record

    @contextlib.contextmanager
    def failure_recorded(
        self,
        actor: Actor,
        action: str,
        target: str | None = None,
        args: dict[str, Any] | None = None,
    ) -> Iterator[None]:
        """Record a LacrimosaError raised inside as the action's outcome (its code and message),
        then let it go on; the caller records a success itself, with what it has to say."""
        try:
            yield
        except LacrimosaError as exc:
            self.record(actor, action, target, args, exc.code, exc.message)
            raise

    def _failed(self, exc: OSError, record: dict[str, Any]) -> dict[str, Any]:
        self.write_errors += 1
        self.last_error = f"{self.path}: {exc.strerror or exc}"
        return record

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(self.path, flags, 0o600)
            try:
                self._recover(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _recover(self, fd: int) -> None:
        """Cut off a torn last line, and go on from the last whole record's seq and hash."""
        size = os.fstat(fd).st_size
        tail = os.pread(fd, min(size, READ_CHUNK), size - min(size, READ_CHUNK))
        whole = tail.rfind(b"\n") + 1
        if whole < len(tail):  # the last line has no newline: a write cut short
            self.torn += 1
            os.ftruncate(fd, size - (len(tail) - whole))
        for line in reversed(tail[:whole].splitlines()):
            try:
                last = json.loads(line)
                self._seq, self._head = int(last["seq"]), str(last["hash"])
                return
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line: verify() reports it; chain on from the one before

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- reading ---------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Records written so far (the newest record's seq)."""
        with self._lock:
            self._open_quietly()
            return self._seq

    @property
    def head(self) -> str:
        """The newest record's hash."""
        with self._lock:
            self._open_quietly()
            return self._head

    def _open_quietly(self) -> None:
        if self._fd is None and self.path.exists():
            try:
                self._open()
            except OSError as exc:
                # count, head and status() answer all the same (status shows the error); the
                # next record() tries again and counts its failure.
                self.last_error = f"{self.path}: {exc.strerror or exc}"

    def records(self, limit: int = 100, since: float | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` records (at most MAX_RECORDS), oldest first, only those at or
        after ``since`` (a Unix time) if given. Read backwards from the end, so the cost is the
        records returned, not the file's size. A damaged line is returned as
        ``{"damaged": "<its text>"}``."""
        limit = max(0, min(limit, MAX_RECORDS))
        found: list[dict[str, Any]] = []
        try:
            for line in self._lines_backwards():
                if len(found) >= limit:
                    break
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError
                except ValueError:
                    found.append({"damaged": line.decode("utf-8", "replace")[:200]})
                    continue
                stamped = isinstance(record.get("time"), int | float)
                if since is not None and stamped and record["time"] < since:
                    break
                found.append(record)
        except OSError as exc:  # not a file that can be read (a folder, an I/O error)
            raise self._unreadable(exc) from None
        found.reverse()
        return found

    def _lines_backwards(self) -> Iterator[bytes]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            end = os.fstat(fd).st_size
            rest = b""
            while end > 0:
                start = max(0, end - READ_CHUNK)
                chunk = os.pread(fd, end - start, start) + rest
                end = start
                lines = chunk.split(b"\n")
                rest = lines[0] if start > 0 else b""
                for line in reversed(lines[1:] if start > 0 else lines):
                    if line:
                        yield line
            if rest:
                yield rest
        finally:
            os.close(fd)

    def verify(self) -> AuditCheck:
        """Walk the whole log and check every record's hash, its link to the one before and its
        sequence number; each problem names the line (1-based) and the record's seq."""
        problems: list[str] = []
        prev, seq, count = GENESIS, 0, 0
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below, read line by line
        except FileNotFoundError:
            return AuditCheck(0, [])
        except OSError as exc:
            raise self._unreadable(exc) from None
        with f:
            for number, raw in enumerate(f, 1):
                count += 1
                line = raw.rstrip(b"\n")
                try:
                    record = json.loads(line)
                    body = {k: v for k, v in record.items() if k not in ("prev", "hash")}
                    stated_seq, stated_prev, stated_hash = (
                        int(record["seq"]),
                        str(record["prev"]),
                        str(record["hash"]),
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    problems.append(f"line {number}: not a record (damaged)")
                    prev, seq = hashlib.sha256(line).hexdigest(), seq + 1
                    continue
                if _digest(stated_prev, body) != stated_hash:
                    problems.append(f"line {number} (seq {stated_seq}): edited (hash mismatch)")
                if stated_seq != seq + 1:
                    what = "missing before it" if stated_seq > seq + 1 else "out of order"
                    problems.append(
                        f"line {number} (seq {stated_seq}): expected seq {seq + 1}, records {what}"
                    )
                elif stated_prev != prev:
                    problems.append(
                        f"line {number} (seq {stated_seq}): does not follow the record before "
                        "(removed, reordered or edited)"
                    )
                prev, seq = stated_hash, stated_seq
        return AuditCheck(count, problems)

    def _unreadable(self, exc: OSError) -> ConsoleError:
        return ConsoleError(f"cannot read the audit log {self.path}: {exc.strerror or exc}")

    def status(self) -> dict[str, Any]:
        """For ``status``: how many records, the newest hash, and what went wrong."""
        out: dict[str, Any] = {
            "path": str(self.path),
            "records": self.count,
            "head": self.head,
            "torn_at_open": self.torn,
            "write_errors": self.write_errors,
        }
        if self.last_error:
            out["last_error"] = self.last_error
        return out
