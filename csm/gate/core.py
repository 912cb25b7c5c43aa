"""What the gate decides, apart from HTTP: who is logged in, whether a password may
be checked now, and what the root side says about a user's container.

Passwords are read from one file per user in the credentials directory (NixOS: the
gate unit's systemd credentials; the runner: copies only the gate's account can
read): an argon2 hash, or a plain password that is hashed in memory when loaded and
never compared as text. A changed file ends that user's sessions.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import argon2.low_level
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from csm.plan_types import Plan

from ..waiting import wait_until
from . import control
from .limits import Allowance, InFlight, client_key
from .sessions import SessionStore, StoreError

log = logging.getLogger("csm.gate")

SAME_SITE = ("same-origin", "none")  # Sec-Fetch-Site values of a page of its own (or typed in)
BUSY_WAIT = 2.0  # seconds a login waits for a free check before "busy"


@dataclass
class Refused(Exception):
    status: int
    kind: str  # X-CSM-Login: limited, busy, refused
    message: str  # for the person, in the login page
    retry_after: int | None = None


class Credentials:
    """Each user's password file, reread when it changes (stat per use), as an argon2
    hash: a plain password is hashed with a salt fixed per user, so the same file gives
    the same hash across restarts (sessions keep their credential), and what the session
    store keeps of it costs an argon2 computation per guess, as a hash file does."""

    def __init__(self, directory: Path, users: dict):
        self.directory, self.users = Path(directory), users
        self._cache: dict[str, tuple[tuple, str]] = {}  # name -> (stat key, hash)
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        """The argon2 hash to verify against (and to tie sessions to)."""
        path = self.directory / name
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._cache.get(name)
            if cached and cached[0] == key:
                return cached[1]
        text = path.read_text().strip()
        if not text:
            raise ValueError(f"the password file for {name} ({path}) is empty")
        hashed = text if self.users[name].password.hashed else _fixed_salt_hash(name, text)
        with self._lock:
            self._cache[name] = (key, hashed)
        return hashed


def session_store(plan: Plan, clock=time.time) -> SessionStore:
    """The plan's session store (the gate's own, and `csm sessions`/`csm passwd`'s view of it)."""
    g = plan.gate
    return SessionStore(Path(g.stateDir), g.sessionIdleSeconds, g.sessionLifetimeSeconds, clock=clock)


class Gate:
    def __init__(self, plan: Plan, credentials: Path, clock=time.time, control_answer: control.Answerer | None = None):
        g = plan.gate
        # Who starts containers: the host's root side on its socket, or (kube.py) the cluster's API.
        self.control_answer = control_answer or (lambda verb, user: control.ask(g.control.socket, verb, user))
        self.plan, self.users, self.paths, self.settings = plan, plan.users, g.paths, g
        self.credentials = Credentials(credentials, plan.users)
        self.sessions = session_store(plan, clock)
        self.allowance = Allowance(g.wrongPasswords.perMinute, g.wrongPasswords.perHour)
        self.verifying = InFlight(g.verificationsAtOnce)
        self._held = threading.BoundedSemaphore(g.heldAtOnce)

    # ---- sessions ---------------------------------------------------------------------
    def cookie_name(self, https: bool) -> str:
        return self.settings.cookie["https" if https else "http"]

    def cookie_header(self, value: str, https: bool, expire: bool = False) -> str:
        age = 0 if expire else self.settings.sessionLifetimeSeconds
        # Host-only (no Domain): ada's cookie is never sent to bo's host.
        return f"{self.cookie_name(https)}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Lax" + (
            "; Secure" if https else ""
        )

    def session_valid(self, cookie: str, user: str) -> bool:
        try:
            return self.sessions.check(cookie, user, self.credentials.get(user))
        except (OSError, ValueError):
            return False  # no password file: nobody is logged in
        except StoreError as e:  # refuse everyone rather than ignore a revocation
            log.error("%s", e)
            return False

    def log_out(self, cookie: str) -> None:
        self.sessions.delete(cookie)

    # ---- login ------------------------------------------------------------------------
    def foreign(self, user: str, https: bool, origin: str | None, fetch_site: str | None) -> bool:
        """A form posted from another site: its Origin is not this user's host (by
        scheme and name; the port is nginx's business), or the browser says the
        request is cross-site. A script sending neither is no page of anyone's."""
        if origin is not None:
            parts = urllib.parse.urlsplit(origin.lower())
            return parts.scheme != ("https" if https else "http") or parts.hostname != self.users[user].hostname
        return fetch_site is not None and fetch_site not in SAME_SITE

    def log_in(
        self, user: str, password: str, client: str, https: bool, origin: str | None, fetch_site: str | None
    ) -> str | None:
        """A new session's cookie value, None for a wrong password, or Refused."""
        if self.foreign(user, https, origin, fetch_site):
            raise Refused(
                403,
                "refused",
                "This login came from another web site and was refused. "
                "Open your workspace's address yourself and log in there.",
            )
        try:
            key = f"{client_key(client, self.settings.ipv6Prefix)} {user}"
        except ValueError:
            key = f"unknown {user}"
        wait = self.allowance.charge(key)  # before the check: racing guesses gain nothing
        if wait > 0:
            seconds = int(wait) + 1
            log.info("login for %s from %s refused: wrong-password allowance spent", user, key.split()[0])
            raise Refused(
                429,
                "limited",
                f"Too many wrong passwords from your network. Try again in {_duration(seconds)}.",
                seconds,
            )
        # One check at a time per address, waiting briefly for a slot. A "busy" answer
        # keeps its charge: retrying it costs a guesser their allowance, not the others'.
        address = key.split()[0]
        if not self.verifying.try_enter(address, wait=BUSY_WAIT):
            raise Refused(503, "busy", "The server is busy checking other logins. Try again in a moment.", 1)
        try:
            hashed = self.credentials.get(user)
            right = _verify(hashed, password)
        except (OSError, ValueError):
            self.allowance.refund(key)
            raise Refused(
                503, "busy", "This workspace has no password set yet. Tell the person who gave you your address.", 60
            ) from None
        finally:
            self.verifying.leave(address)
        if not right:
            log.info("wrong password for %s from %s", user, key.split()[0])
            return None
        self.allowance.refund(key)  # right passwords are never counted
        log.info("%s logged in from %s", user, key.split()[0])
        try:
            return self.sessions.create(user, hashed)
        except StoreError as e:
            log.error("%s", e)
            raise Refused(
                503, "busy", "The server cannot keep logins right now. Tell the person who gave you your address.", 60
            ) from None

    # ---- the root side ----------------------------------------------------------------------
    def ask(self, verb: str, user: str) -> dict:
        try:
            return self.control_answer(verb, user)
        except control.ControlError as e:
            log.warning("%s %s: %s", verb, user, e)
            return {"state": "stopped"}  # no root side (no idle users): nothing is started here

    def wait_ready(self, user: str, client: str) -> dict:
        """The container's state, held up to readyHoldSeconds while it is starting."""
        state = self.ask("state", user)
        if state["state"] != "starting" or not self._held.acquire(blocking=False):
            return state
        try:

            def settled() -> bool:
                nonlocal state
                state = self.ask("state", user)
                return state["state"] != "starting"

            try:
                wait_until(settled, self.settings.readyHoldSeconds, f"{user} ready", interval=0.2)
            except TimeoutError:
                pass  # still starting: the answer says so
            return state
        finally:
            self._held.release()

    # ---- pages ---------------------------------------------------------------------------------
    def page(self, user: str, name: str, **fields: str) -> str:
        """A page of the user's plan; fields fill @NAME@, each HTML-escaped by the caller
        or here (NEXT)."""
        text = self.users[user].pages[name]
        for key, value in fields.items():
            text = text.replace(f"@{key}@", _html_attr(value) if key == "NEXT" else value)
        return text

    @staticmethod
    def safe_next(path: str | None) -> str:
        """Where to go after the login: a path of this host only."""
        if (
            not path
            or not path.startswith("/")
            or path.startswith("//")
            or "\\" in path
            or any(ord(c) < 32 or ord(c) > 126 for c in path)
        ):  # a header carries ASCII only
            return "/"
        return path


def _fixed_salt_hash(name: str, password: str) -> str:
    salt = hashlib.sha256(f"code-server-multi password of {name}".encode()).digest()[:16]
    raw = argon2.low_level.hash_secret(
        password.encode(),
        salt,
        time_cost=3,
        memory_cost=65536,
        parallelism=4,
        hash_len=32,
        type=argon2.low_level.Type.ID,
    )
    return raw.decode()


def _verify(hashed: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _html_attr(text: str) -> str:
    return html.escape(text, quote=True)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{(seconds + 59) // 60} minutes"
