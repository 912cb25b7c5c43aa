"""Server-side sessions of the login gate.

The cookie holds 256 random bits; the store keeps only their sha256, so a leaked
sessions.json or a backup of it opens no live session. A session belongs to one
user (it is never accepted on another user's host) and to one password: each record
keeps a short digest of the password hash it was made under, so a new password ends
every older session. A session also ends after `idle_seconds` without a request,
`absolute_seconds` after login, on logout and on revocation.

Two processes share the directory. The gate (an unprivileged account) owns
sessions.json and is the only one that writes it. Root's CLI (`csm sessions
--revoke`, `csm passwd`) writes revoked.json, {user: epoch}; the gate re-reads it
when it changes and refuses every session of that user created at or before then,
so a revocation takes effect at once, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SESSIONS_FILE = "sessions.json"
REVOKED_FILE = "revoked.json"
# last_seen alone is written at most this often: a burst of requests does not write
# the file each time, and a crash loses at most this much of a session's idle time.
WRITE_EVERY = 60.0
# A scripted login loop cannot grow the file (and every login's write) forever.
MAX_PER_USER = 10_000


class StoreError(Exception):
    """A store file cannot be read; the message names it and what to do."""


@dataclass(frozen=True)
class SessionInfo:
    user: str
    created: float
    last_seen: float
    id: str  # first 8 hex chars of the stored hash: tells sessions apart, opens none


@dataclass
class _Record:
    user: str
    created: float
    last_seen: float
    credential: str  # first 16 hex chars of sha256(the password hash of the login)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _credential(credential: str) -> str:
    return _sha256(credential)[:16]


class SessionStore:
    def __init__(self, directory: str | os.PathLike, idle_seconds: float, absolute_seconds: float, clock=time.time):
        self.directory = Path(directory)
        self.idle_seconds, self.absolute_seconds = idle_seconds, absolute_seconds
        self._clock, self._lock = clock, threading.Lock()
        self._records = _read_sessions(self.directory / SESSIONS_FILE)
        self._revoked: dict[str, float] = {}
        self._revoked_stat: tuple | None = None
        self._dirty = False  # last_seen changes not yet written
        self._written_at = clock()
        with self._lock:
            self._refresh_revoked()

    def create(self, user: str, credential: str) -> str:
        """A new session of `user`; returns the cookie value (never stored, never logged)."""
        value = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._refresh_revoked()
            for key in [k for k, r in self._records.items() if not self._alive(r, now)]:
                del self._records[key]
            mine = sorted((r.created, k) for k, r in self._records.items() if r.user == user)
            for _, key in mine[: max(0, len(mine) - MAX_PER_USER + 1)]:
                del self._records[key]  # the oldest go
            self._records[_sha256(value)] = _Record(user, now, now, _credential(credential))
            self._write()
        return value

    def check(self, value: str, user: str, credential: str) -> bool:
        """True if `value` is a live session of `user` made under `credential` (the
        user's current password hash); it then counts as activity."""
        key = _sha256(value)
        now = self._clock()
        with self._lock:
            # A dict lookup of sha256(value), not a comparison of secrets: its timing can
            # tell at most how the hash of a guess relates to stored hashes, and a hash
            # gives no value back. The value itself is never compared.
            record = self._records.get(key)
            if record is None or record.user != user:
                return False
            self._refresh_revoked()
            if not (self._alive(record, now) and hmac.compare_digest(record.credential, _credential(credential))):
                del self._records[key]  # expired, revoked or of an old password: never valid again
                self._write()
                return False
            record.last_seen = now
            self._dirty = True
            # (a clock stepped back writes too, rather than waiting for it to catch up)
            if not 0 <= now - self._written_at < WRITE_EVERY:
                self._write()
            return True

    def delete(self, value: str) -> None:
        """Logout: the session of `value` ends (nothing happens if there is none)."""
        with self._lock:
            if self._records.pop(_sha256(value), None) is not None:
                self._write()

    def flush(self) -> None:
        """Write last_seen changes not yet written (for a clean shutdown)."""
        with self._lock:
            if self._dirty:
                self._write()

    def sessions(self, user: str | None = None) -> list[SessionInfo]:
        """The live sessions (of `user`, or of everyone), oldest first, as sessions.json
        on disk and this instance know them (one idle up to WRITE_EVERY past
        idle_seconds may be listed: the file's last_seen may lag that much)."""
        now = self._clock()
        with self._lock:
            self._refresh_revoked()
            merged = self._merged_with_disk()
        return sorted(
            (
                SessionInfo(r.user, r.created, r.last_seen, k[:8])
                for k, r in merged.items()
                if (user is None or r.user == user) and self._alive(r, now, WRITE_EVERY)
            ),
            key=lambda s: (s.created, s.id),
        )

    def revoke(self, user: str) -> int:
        """End every session of `user` made until now, in this and every other process
        using the directory. Returns how many were live, counted as sessions() lists them."""
        now = self._clock()
        with self._lock:
            self._refresh_revoked()
            count = sum(
                1 for r in self._merged_with_disk().values() if r.user == user and self._alive(r, now, WRITE_EVERY)
            )
            # Merged with what is there: each user keeps the latest revocation. (Two
            # revocations at the same instant, from two root shells, may lose one.)
            revoked = self._revoked | {user: max(now, self._revoked.get(user, float("-inf")))}
            _write_json(self.directory / REVOKED_FILE, revoked)
            self._refresh_revoked()
        return count

    # --- under the lock ---

    def _alive(self, record: _Record, now: float, slack: float = 0.0) -> bool:
        """`slack`: for records read from disk, whose last_seen may lag by WRITE_EVERY."""
        return (
            now - record.last_seen <= self.idle_seconds + slack
            and now - record.created <= self.absolute_seconds
            and record.created > self._revoked.get(record.user, float("-inf"))
        )

    def _refresh_revoked(self) -> None:
        """Re-read revoked.json when it changed: a stat per check, a read per revocation."""
        path = self.directory / REVOKED_FILE
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._revoked, self._revoked_stat = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._revoked_stat:
            self._revoked, self._revoked_stat = _read_revoked(path), stamp

    def _merged_with_disk(self) -> dict[str, _Record]:
        merged = _read_sessions(self.directory / SESSIONS_FILE)
        for key, record in self._records.items():
            if key not in merged or record.last_seen > merged[key].last_seen:
                merged[key] = record
        return merged

    def _write(self) -> None:
        data = {"sessions": {key: asdict(r) for key, r in self._records.items()}}
        _write_json(self.directory / SESSIONS_FILE, data)
        self._dirty, self._written_at = False, self._clock()


def _load_json(path: Path) -> Any:
    """The parsed file, None if it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StoreError(
            f"cannot read {path}: {err.strerror}; the gate's account must own {path.parent} and its files"
        ) from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise _corrupt(path, f"not JSON: {err}") from err


def _corrupt(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path} is corrupt ({why}). Delete it to start afresh "
        f"(everyone then logs in again; revocations in it are moot then)"
    )


def _read_sessions(path: Path) -> dict[str, _Record]:
    data = _load_json(path)
    if data is None:
        return {}
    try:
        records = {
            key: _Record(str(r["user"]), float(r["created"]), float(r["last_seen"]), str(r["credential"]))
            for key, r in data["sessions"].items()
        }
        if any(len(key) != 64 for key in records) or any(len(r) != 4 for r in data["sessions"].values()):
            raise ValueError("a record is malformed")
        return records
    except (TypeError, KeyError, AttributeError, ValueError) as err:
        raise _corrupt(path, f"not a session store: {err!r}") from err


def _read_revoked(path: Path) -> dict[str, float]:
    data = _load_json(path)
    if data is None:
        return {}
    try:
        return {str(user): float(when) for user, when in data.items()}
    except (TypeError, AttributeError, ValueError) as err:
        raise _corrupt(path, f"not a {{user: time}} map: {err!r}") from err


def _write_json(path: Path, data: object) -> None:
    """Atomically and durably: a reader, or the file after a crash, is the old one or
    the new, never half. Mode 0600, owned by the directory's owner: root's CLI writes
    revoked.json in the gate's directory, and the gate must still read it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        if os.geteuid() == 0:
            st = os.stat(path.parent)
            os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "w") as f:
            fd = -1
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash (a lost revocation would not)
    finally:
        os.close(dir_fd)
