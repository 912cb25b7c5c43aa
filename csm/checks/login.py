"""Login limits, checked through nginx from several client addresses: nobody can
keep a person out of their workspace, a class behind one address gets in, and
wrong passwords stay slow per address.

nginx limits password submissions per address as a coarse flood guard; the gate counts
wrong passwords per client address (X-Real-IP, set by nginx; IPv6 per /64), charged
before the password is checked, and never counts right ones. Each check takes `http.Target`s whose
`source_address` differ (127.0.0.x on one host, extra addresses on a VM's client),
and returns what it saw, or raises CheckFailed.

    owner = http.Target("https://ada.code.example.org", password, source_address="10.0.0.30")
    attackers = [owner.from_source(f"10.0.0.{n}") for n in (21, 22, 23)]
    print(owner_never_locked_out(owner, attackers, minutes=3))
"""

from __future__ import annotations

import collections
import secrets
import threading
import time

from csm.checks import CheckFailed
from csm.checks.facts import gate_path
from csm.checks.http import Target, _http, _login, _login_answer

# The gate's allowance per address: 2 wrong passwords a minute, plus 12 more an hour.
GUESSES_PER_MINUTE = 2
GUESSES_PER_HOUR = 12


def allowed_guesses(minutes: float) -> int:
    """Wrong passwords one address may get checked in `minutes`, with one of slack
    for a minute boundary."""
    return GUESSES_PER_HOUR + GUESSES_PER_MINUTE * (int(minutes) + 1) + 1


def _attempt(t: Target, password: str, path: str | None = None, origin: str | None = "own") -> str:
    """One login: 'session', 'checked' (wrong password, really compared), 'limited'
    (refused unchecked by the gate), 'busy' (the gate's bound on checks in flight),
    'refused' (another site's form), 'proxy-429' (nginx's flood guard) or 'nothing'
    (no login there: the login page in place of the path asked for)."""
    r, cookie = _login(t, password, path, origin)
    kind = r.headers.get("X-CSM-Login")
    if r.status_code == 303 and cookie is not None and kind == "ok":
        return "session"
    if r.status_code == 429 and kind is None:
        return "proxy-429"
    answer = _login_answer(r)
    expected = {
        "wrong": (401, "checked"),
        "limited": (429, "limited"),
        "busy": (503, "busy"),
        "refused": (403, "refused"),
        "empty": (401, "nothing"),
    }
    if kind in expected and r.status_code == expected[kind][0]:
        if kind in ("limited", "busy") and not r.headers.get("Retry-After"):
            raise CheckFailed(f"a {kind} login to {t.origin} has no Retry-After: {answer}")
        return expected[kind][1]
    if kind is None and r.status_code == 401 and 'name="password"' in r.text:
        return "nothing"
    raise CheckFailed(
        f"a login to {t.origin} got an answer that is neither a session, a wrong password nor a limit: {answer}"
    )


def _wrong() -> str:
    return "wrong-" + secrets.token_hex(8)


def login_page_loads_not_limited(t: Target, loads: int = 60) -> str:
    """Loading the login page (GET) is never limited: `loads` quick loads from one address."""
    statuses = collections.Counter(_http(t, "GET", gate_path("login")).status_code for _ in range(loads))
    if set(statuses) != {200}:
        raise CheckFailed(
            f"{loads} loads of {t.origin}{gate_path('login')} from {t.source_address}: {dict(statuses)}; "
            "loading the page must never be limited"
        )
    return f"{loads} loads of the login page from {t.source_address} all got 200"


def classroom_logs_in(t: Target, logins: int = 20, typos: int = 8, guesses: int = 20, seconds: float = 55) -> str:
    """`logins` right-password logins from one address within `seconds` all succeed,
    with `typos` wrong passwords among them (a class mistypes); then `guesses` more
    wrong passwords from that address get no more than code-server's per-address
    allowance checked, the rest refused unchecked.

    An address past its allowance is refused unchecked, right password included, until
    its next minute: checking first would let a guesser past the limit. So a class
    gets in as long as it mistypes less than the allowance."""
    if typos >= GUESSES_PER_HOUR + GUESSES_PER_MINUTE:
        raise ValueError(f"{typos} typos spend the whole allowance; the class could not get in")
    # Spread evenly: the k-th of each kind at k/count of the way.
    order = [
        kind
        for _, kind in sorted(
            [((k + 0.5) / logins, "right") for k in range(logins)]
            + [((k + 0.5) / max(typos, 1), "wrong") for k in range(typos)]
        )
    ]
    pause = seconds / (len(order) + guesses)
    seen: dict[str, collections.Counter[str]] = {"right": collections.Counter(), "wrong": collections.Counter()}
    for kind in order + ["wrong"] * guesses:
        started = time.monotonic()
        seen[kind][_attempt(t, t.secret() if kind == "right" else _wrong())] += 1
        time.sleep(max(0.0, pause - (time.monotonic() - started)))
    if seen["right"]["session"] != logins:
        raise CheckFailed(
            f"of {logins} right-password logins from {t.source_address} within {seconds:.0f} s "
            f"({typos} typos among them), only {seen['right']['session']} got in: {dict(seen['right'])}"
        )
    if seen["wrong"]["session"]:
        raise CheckFailed(f"a wrong password opened {t.origin}")
    allowed = allowed_guesses(seconds / 60)
    if seen["wrong"]["checked"] > allowed or not seen["wrong"]["limited"]:
        raise CheckFailed(
            f"{seen['wrong']['checked']} of {typos + guesses} wrong passwords from {t.source_address} "
            f"were checked within {seconds:.0f} s ({dict(seen['wrong'])}); at most {allowed} may be, "
            "and the rest must be refused unchecked"
        )
    return (
        f"{logins} right-password logins from {t.source_address} within {seconds:.0f} s all got in, "
        f"{typos} typos among them; of {typos + guesses} wrong passwords {seen['wrong']['checked']} were checked "
        f"({dict(seen['wrong'])})"
    )


def owner_never_locked_out(
    owner: Target, attackers: list[Target], minutes: float = 3, owner_every: float = 20, attack_every: float = 2.1
) -> str:
    """While each attacker address sends a wrong password every `attack_every` s
    (about what nginx lets through) for `minutes`, the owner, from an address of
    their own, logs in every `owner_every` s: every owner login succeeds, and each
    attacker address gets at most code-server's per-address allowance checked."""
    if owner.source_address in {a.source_address for a in attackers}:
        raise ValueError("the owner needs an address no attacker uses")
    stop = time.monotonic() + minutes * 60
    tallies: dict[str | None, collections.Counter[str]] = {a.source_address: collections.Counter() for a in attackers}
    errors: list[str] = []

    def attack(a: Target) -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                tallies[a.source_address][_attempt(a, _wrong())] += 1
            except CheckFailed as e:
                errors.append(str(e))
            time.sleep(max(0.0, attack_every - (time.monotonic() - started)))

    threads = [threading.Thread(target=attack, args=(a,), daemon=True) for a in attackers]
    for th in threads:
        th.start()
    owner_logins: list[str] = []
    time.sleep(min(owner_every, 5))  # the attack is under way
    while time.monotonic() < stop:
        started = time.monotonic()
        owner_logins.append(_attempt(owner, owner.secret()))
        time.sleep(max(0.0, min(owner_every - (time.monotonic() - started), stop - time.monotonic())))
    for th in threads:
        th.join()
    if errors:
        raise CheckFailed(errors[0])
    refused = [i for i, answer in enumerate(owner_logins) if answer != "session"]
    if refused:
        raise CheckFailed(
            f"during the attack from {len(attackers)} addresses the owner's right password "
            f"was refused {len(refused)} of {len(owner_logins)} times: {owner_logins}"
        )
    allowed = allowed_guesses(minutes)
    greedy = {src: dict(t) for src, t in tallies.items() if t["checked"] > allowed}
    if greedy:
        raise CheckFailed(
            f"attacker addresses got more than {allowed} wrong passwords checked in {minutes:g} minutes: {greedy}"
        )
    if any(t["session"] for t in tallies.values()):
        raise CheckFailed("a wrong password opened the workspace")
    return (
        f"{len(attackers)} addresses guessing for {minutes:g} minutes "
        f"({', '.join(f'{s}: {dict(t)}' for s, t in tallies.items())}); "
        f"the owner got in all {len(owner_logins)} times"
    )


def concurrent_guesses_charged_first(
    t: Target, owner: Target | None = None, guesses: int = 60, path: str | None = None
) -> str:
    """`guesses` wrong passwords sent at once from one address (t.source_address: one
    nobody else uses) get at most the per-address allowance checked: each is charged
    before its check, so racing gains nothing. Then `owner`, from another address,
    still gets in."""
    results: list[str] = []
    barrier = threading.Barrier(guesses)

    def guess() -> None:
        barrier.wait()
        results.append(_attempt(t, _wrong(), path))

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seen = collections.Counter(results)
    allowed = GUESSES_PER_HOUR + GUESSES_PER_MINUTE
    if seen["session"] or seen["checked"] > allowed or seen["checked"] == 0:
        raise CheckFailed(
            f"{guesses} wrong passwords at once from {t.source_address}: {dict(seen)}; at most "
            f"{allowed} may be checked, the rest refused unchecked"
        )
    if owner is not None and (answer := _attempt(owner, owner.secret())) != "session":
        raise CheckFailed(f"after the burst the owner, from {owner.source_address}, got {answer!r}, not in")
    return f"{guesses} wrong passwords at once from {t.source_address}: {dict(seen)} (at most {allowed} checked)" + (
        "; the owner got in from another address" if owner else ""
    )


# Spellings of the login path a router might take for it; only the gate's exact path
# logs in. ("/_csm//login", "/_csm/./login" and "/%5Fcsm/login" are not among them:
# nginx normalizes them into the login path itself, flood guard included.)
def login_variants() -> list[str]:
    prefix, login = gate_path("prefix"), gate_path("login")
    name = login.removeprefix(prefix)
    return [
        "/login",
        "/LOGIN",
        "/Login",
        "/login/",
        prefix + name.upper(),
        prefix.upper() + name,
        login + "/",
        login + "%2F",
        login + ";x",
        login + ".",
        gate_path("auth"),
        gate_path("wake"),
    ]


def login_path_variants_check_nothing(t: Target, rounds: int = 3) -> str:
    """No other spelling of the login path checks a password or opens a session, with
    the right password or a wrong one: each gets the login page (401) or a 404."""
    seen: collections.Counter = collections.Counter()
    for _ in range(rounds):
        for path in login_variants():
            for password in (t.secret(), _wrong()):
                r, cookie = _login(t, password, path)
                kind = r.headers.get("X-CSM-Login")
                if cookie is not None or kind in ("ok", "wrong"):
                    raise CheckFailed(
                        f"POST {path} checked a password (HTTP {r.status_code}, {kind}); only {gate_path('login')} may"
                    )
                seen[f"{path} {r.status_code}"] += 1
    return f"{len(login_variants())} other spellings of the login path, {rounds} rounds: none checked a password"


def cross_site_login_refused(t: Target, evil: str = "https://evil.example") -> str:
    """A login form posted from another site (its Origin, or Sec-Fetch-Site cross-site)
    is refused before anything is counted, even with the right password."""
    for origin in (evil, f"{t.scheme}://{t.sibling('csm-other').netloc}"):
        if (answer := _attempt(t, t.secret(), origin=origin)) != "refused":
            raise CheckFailed(f"a login from {origin} with the right password got {answer!r}, not refused")
    r = _http(t, "POST", gate_path("login"), data={"password": t.password}, headers={"Sec-Fetch-Site": "cross-site"})
    if r.status_code != 403:
        raise CheckFailed(f"a cross-site login (Sec-Fetch-Site) got HTTP {r.status_code}, not 403")
    refused = collections.Counter(_attempt(t, _wrong(), origin=evil) for _ in range(GUESSES_PER_HOUR + 3))
    if set(refused) != {"refused"}:
        raise CheckFailed(f"wrong passwords posted from {evil}: {dict(refused)}; all must be refused unchecked")
    if (answer := _attempt(t, _wrong())) != "checked":
        raise CheckFailed(
            f"after {sum(refused.values())} refused cross-site guesses the address's own wrong "
            f"password got {answer!r}: the refused ones were counted"
        )
    return (
        f"logins posted from {evil}, a sibling host or cross-site are refused (403), right password or not, "
        f"and never counted"
    )


def one_prefix_shares_an_allowance(guessers: list[Target], owner: Target, guesses: int = 30) -> str:
    """Wrong passwords from several addresses of one IPv6 /64 (the guessers'
    source_address) share one allowance: in turn, `guesses` of them get at most the
    allowance checked in all. The owner, from another network, still gets in."""
    seen: collections.Counter = collections.Counter()
    for i in range(guesses):
        seen[_attempt(guessers[i % len(guessers)], _wrong())] += 1
    allowed = allowed_guesses(1)
    if seen["session"] or seen["checked"] > allowed or not seen["limited"]:
        raise CheckFailed(
            f"{guesses} wrong passwords from {len(guessers)} addresses of one network: {dict(seen)}; "
            f"at most {allowed} may be checked in all"
        )
    if (answer := _attempt(owner, owner.secret())) != "session":
        raise CheckFailed(f"the owner, from {owner.source_address}, got {answer!r}, not in")
    return (
        f"{guesses} wrong passwords from {len(guessers)} addresses of one /64: {dict(seen)}; "
        f"the owner got in from {owner.source_address}"
    )
