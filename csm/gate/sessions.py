"""Server-side sessions of the gate.

A session is 256 random bits in the browser's cookie; the store keeps only the
value's sha256, so a leaked state directory or backup gives no live session. Each
record names its user (ada's session never opens bo's host) and a digest of the
user's password file at login: a new password ends every older session.

The gate (its own account) owns sessions.json. The root CLI (`csm passwd`,
`csm sessions --revoke`) ends sessions from another process by writing
revoked.json ({user: epoch}); every check honours it, rereading it when it changes.
last_seen reaches the disk at most once a minute per session: after a crash a
session may look up to a minute less idle than it was.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SESSIONS_FILE = "sessions.json"
REVOKED_FILE = "revoked.json"
PER_USER = 10000          # a scripted login loop cannot grow the file without end
LAST_SEEN_WRITE = 60.0    # seconds between writes of a session's last use


@dataclass(frozen=True)
class SessionInfo:
    user: str
    created: float
    last_seen: float
    id: str          # the stored hash's first 8 characters: tells sessions apart, opens nothing


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600 if path.name == SESSIONS_FILE else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read ({e}); delete it (everyone logs in again)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; delete it (everyone logs in again)")
    return data


class SessionStore:
    def __init__(self, directory: Path, idle_seconds: int, absolute_seconds: int, clock=time.time):
        self.directory, self.idle, self.absolute, self.clock = Path(directory), idle_seconds, absolute_seconds, clock
        self._lock = threading.Lock()
        self._records: dict[str, dict] = _read_json(self.directory / SESSIONS_FILE)
        self._written: dict[str, float] = {}       # hash -> last_seen as on disk
        self._revoked: dict[str, float] = {}
        self._revoked_key: tuple | None = None

    # ---- the gate's side --------------------------------------------------------
    def create(self, user: str, credential: str) -> str:
        value = secrets.token_urlsafe(32)   # 256 bits
        now = self.clock()
        with self._lock:
            mine = sorted((r["created"], h) for h, r in self._records.items() if r["user"] == user)
            for _, h in mine[:max(0, len(mine) - PER_USER + 1)]:
                del self._records[h]
            self._records[_digest(value)] = {"user": user, "created": now, "last_seen": now,
                                             "credential": _digest(credential)[:16]}
            self._save()
        return value

    def check(self, value: str, user: str, credential: str) -> bool:
        key = _digest(value)   # a lookup by hash: the value itself is never compared
        now = self.clock()
        revoked_at = self._revoked_at(user)
        with self._lock:
            r = self._records.get(key)
            if r is None:
                return False
            if now - r["last_seen"] > self.idle or now - r["created"] > self.absolute or \
                    (revoked_at is not None and r["created"] <= revoked_at):
                del self._records[key]
                self._save()
                return False
            if r["user"] != user or r["credential"] != _digest(credential)[:16]:
                return False
            r["last_seen"] = now
            if now - self._written.get(key, r["created"]) >= LAST_SEEN_WRITE:
                self._save()
        return True

    def delete(self, value: str) -> None:
        with self._lock:
            if self._records.pop(_digest(value), None) is not None:
                self._save()

    def _save(self) -> None:
        _write_json(self.directory / SESSIONS_FILE, self._records)
        self._written = {h: r["last_seen"] for h, r in self._records.items()}

    def _revoked_at(self, user: str) -> float | None:
        path = self.directory / REVOKED_FILE
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            key = None
        if key != self._revoked_key:
            self._revoked = _read_json(path) if key else {}
            self._revoked_key = key
        return self._revoked.get(user)

    # ---- the root CLI's side ---------------------------------------------------------
    def sessions(self, user: str | None = None) -> list[SessionInfo]:
        records = _read_json(self.directory / SESSIONS_FILE) | self._records
        revoked = _read_json(self.directory / REVOKED_FILE)
        now = self.clock()
        return sorted((SessionInfo(r["user"], r["created"], r["last_seen"], h[:8]) for h, r in records.items()
                       if (user is None or r["user"] == user) and now - r["last_seen"] <= self.idle
                       and now - r["created"] <= self.absolute and r["created"] > revoked.get(r["user"], -1)),
                      key=lambda s: (s.user, s.created))

    def revoke(self, user: str) -> int:
        """End every session of user (from any process); how many there were."""
        count = len(self.sessions(user))
        revoked = _read_json(self.directory / REVOKED_FILE)
        revoked[user] = self.clock()
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_json(self.directory / REVOKED_FILE, revoked)
        return count
