"""Property tests: generated valid settings always give a plan that meets the
invariants (or, when two names hash onto one uid range, the clash message naming
both); one generated fault always gives its message."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from invariants import assert_plan_meets_invariants

from csm import plan as planlib


def reserved_names() -> set[str]:
    """The reserved names, as the plan's own message states them (no copy here)."""
    try:
        planlib.from_settings({"domain": "c.test", "users": {"www": {"passwordFile": "/s/w"}}})
    except planlib.PlanError as err:
        reserved = re.search(r'the name "www" is reserved \(([^)]*)\)', str(err))
        assert reserved, str(err)
        return set(reserved.group(1).split(", "))
    raise AssertionError("the plan accepted a reserved name")


RESERVED = reserved_names()

# Up to 63 characters: the longest names nginx's server name hash must take.
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True).filter(lambda s: s not in RESERVED)
units = st.sampled_from(["m", "g", "M", "G", "gb"])


@st.composite
def limits(draw):
    hard_mb = draw(st.integers(512, 16384))
    soft_mb = draw(st.integers(256, hard_mb))
    as_g = draw(st.booleans()) and hard_mb % 1024 == 0 and soft_mb % 1024 == 0
    fmt = (lambda mb: f"{mb // 1024}g") if as_g else (lambda mb: f"{mb}m")
    return {"memoryLimit": fmt(hard_mb), "memorySoftLimit": fmt(soft_mb)}


@st.composite
def user(draw, name):
    u = {draw(st.sampled_from(["hashedPasswordFile", "passwordFile"])): f"/run/secrets/{name}"}
    if draw(st.booleans()):
        u.update(draw(limits()))
    if draw(st.booleans()):
        u["cpuLimit"] = draw(st.sampled_from(["0.5", "1", "1.5", "2", "4"]))
    if draw(st.booleans()):
        u["pidsLimit"] = draw(st.integers(64, 65536))
    if draw(st.booleans()):
        u["environmentFiles"] = [f"/run/secrets/{name}-keys.env"]
    return u


@st.composite
def valid_settings(draw):
    names = draw(st.lists(labels, min_size=1, max_size=5, unique=True))
    users = {name: draw(user(name)) for name in names}
    domain = ".".join(draw(st.lists(labels, min_size=1, max_size=3)))
    return {"domain": domain, "workspaceBase": "/srv/code", "users": users}


CLASH = re.compile(r"users\.([a-z0-9-]+) and users\.([a-z0-9-]+) both get (host id range starting at) ")


def alone(settings: dict, name: str) -> dict:
    """What the user gets in a plan of their own: automatic ids depend on the name
    only, so the same as beside anyone else."""
    return planlib.from_settings({**settings, "users": {name: settings["users"][name]}}).users[name]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_settings())
def test_valid_settings_give_a_plan_meeting_the_invariants(settings):
    try:
        plan = planlib.from_settings(settings)
    except planlib.PlanError as err:
        # Only a real clash may refuse valid settings: the two users it names get the
        # same id range when each is planned alone.
        clash = CLASH.search(str(err))
        assert clash and "set users." in str(err), str(err)
        a, b = alone(settings, clash.group(1)), alone(settings, clash.group(2))
        assert a.ids.base == b.ids.base, f"{clash.group(0)}: alone they get {a.ids} and {b.ids}"
        return
    assert_plan_meets_invariants(plan, settings)  # distinct sockets, disjoint id ranges, names nginx takes


FAULTS = {
    "bad name": lambda s, n: (
        s["users"].__setitem__(n.upper() + "_X", s["users"].pop(n)),
        f'users.{n.upper()}_X: the name "{n.upper()}_X" is not a DNS label',
    ),
    "reserved name": lambda s, n: (
        s["users"].__setitem__(min(RESERVED), s["users"].pop(n)),
        f'users.{min(RESERVED)}: the name "{min(RESERVED)}" is reserved',
    ),
    "bad size": lambda s, n: (
        s["users"][n].__setitem__("memoryLimit", "3 gigs"),
        f'users.{n}.memoryLimit = "3 gigs" is not a size',
    ),
    "soft above hard": lambda s, n: (
        s["users"][n].update(memoryLimit="1g", memorySoftLimit="2g"),
        f'users.{n}.memorySoftLimit ("2g") is above memoryLimit ("1g")',
    ),
    "no password": lambda s, n: (
        [s["users"][n].pop(k, None) for k in ("hashedPasswordFile", "passwordFile")],
        f"users.{n}: no password file",
    ),
    "a port of old": lambda s, n: (s["users"][n].__setitem__("port", 8090), f"users.{n}.port is no longer a setting"),
    "bad domain": lambda s, n: (s.__setitem__("domain", "-" + s["domain"]), "is not a hostname"),
}


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_settings(), st.sampled_from(sorted(FAULTS)), st.data())
def test_one_fault_always_gives_its_message(settings, fault, data):
    name = data.draw(st.sampled_from(sorted(settings["users"])))
    _, fragment = FAULTS[fault](settings, name)
    try:
        planlib.from_settings(settings)
    except planlib.PlanError as err:
        assert fragment in str(err), f"{fault}: {fragment!r} not in\n{err}"
    else:
        raise AssertionError(f"{fault} was accepted")
