"""The plan's shape, as the Python side reads it: what plan.nix evaluates to.

Attribute names are the plan's own JSON names (camelCase included), so one name
means one fact in plan.nix, plan.json, docs/plan.md and here, and
`dataclasses.asdict(plan)` is the JSON again. Parts the Python side only hands on
(nginx lines, pages, opencode's config) stay plain JSON values.
`csm.plan.load_plan` builds these from JSON and checks every field on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = Any  # a JSON value handed on as it is


@dataclass
class Directory:
    path: str
    uid: int | str  # a number, or an account's name (the gate's)
    gid: int | str
    mode: str


@dataclass
class SeedFile:
    path: str
    content: str
    uid: int
    gid: int
    mode: str


@dataclass
class Container:
    name: str
    unit: str  # NixOS: the systemd unit oci-containers makes for it
    image: str
    user: str
    cmd: list[str]
    environment: dict[str, str]
    environmentFiles: list[str]
    extraOptions: list[str]
    labels: dict[str, str]
    healthCheck: list[str]
    healthPath: str
    healthTimeoutSeconds: int  # how long a (re)started container may take to pass it
    socket: str
    ports: list[str]
    restart: str
    volumes: list[str]


@dataclass
class Disk:
    quotaBytes: int | None
    image: str
    mountPoint: str


@dataclass
class Ids:
    base: int
    size: int
    containerUid: int
    hostUid: int
    hostGid: int


@dataclass
class Limits:
    cpus: str
    memoryBytes: int
    memorySoftBytes: int
    pids: int


@dataclass
class Network:
    name: str
    unit: str
    createOptions: list[str]


@dataclass
class Password:
    file: str
    hashed: bool


@dataclass
class UserIdle:
    stopAfterSeconds: int | None


@dataclass
class User:
    name: str
    hostname: str
    container: Container
    network: Network
    disk: Disk
    ids: Ids
    limits: Limits
    idle: UserIdle
    password: Password
    directories: list[Directory]
    seedFiles: list[SeedFile]
    socket: str  # where nginx reaches code-server (a link to socketSource)
    socketSource: str
    nginx: Json
    pages: dict[str, str]


@dataclass
class GatePaths:
    prefix: str
    auth: str
    login: str
    logout: str
    wake: str
    ready: str
    health: str


@dataclass
class GateControl:
    directory: str
    socket: str


@dataclass
class WrongPasswords:
    perMinute: int
    perHour: int


@dataclass
class Gate:
    unit: str
    user: str
    proxyGroup: str
    directory: str
    socket: str
    stateDir: str
    control: GateControl
    cookie: dict[str, str]  # the session cookie's name by scheme (http, https)
    paths: GatePaths
    userHeader: str  # the front's header naming the user (never the client's)
    heldAtOnce: int
    verificationsAtOnce: int
    ipv6Prefix: int
    readyHoldSeconds: int
    retryAfterSeconds: int
    sessionIdleSeconds: int
    sessionLifetimeSeconds: int
    wrongPasswords: WrongPasswords


@dataclass
class Idle:
    enable: bool
    users: list[str]
    stateDir: str
    checkIntervalSeconds: int
    cpuThreshold: float
    healthTimeoutSeconds: int
    retryFailedAfterSeconds: int


@dataclass
class Acme:
    enable: bool
    domain: str
    certName: str
    extraDomainNames: list[str]
    email: str | None
    dnsProvider: str | None
    credentialsFile: str | None


@dataclass
class Backup:
    enable: bool
    target: str
    schedule: str
    keep: int
    paths: list[str]


@dataclass
class Tls:
    enable: bool
    certificateFile: str | None
    keyFile: str | None
    useACMEHost: str | None


@dataclass
class Labels:
    user: str  # the label naming a container's user, on every container of the project


@dataclass
class Plan:
    version: int
    domain: str
    image: str
    namePrefix: str
    workspaceBase: str
    runtimeDir: str
    labels: Labels
    users: dict[str, User]
    gate: Gate
    idle: Idle
    directories: list[Directory]
    acme: Acme
    backup: Backup
    tls: Tls
    nginx: Json
    opencode: Json
