"""What the store hands out: frozen records, one per concept, built from rows."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping


def now_iso() -> str:
    """ISO 8601 UTC to the second, as Heroku's API shows timestamps: 2026-11-26T12:00:00Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# The Procfile's `release` type is the release phase's command (Heroku's): it runs once per
# release in a one-off dyno before the release goes live, and is never part of the formation.
RELEASE_PHASE = "release"
# What a one-off dyno started by `dynomesh run` is named after: run.1, run.2, ...
RUN_TYPE = "run"


class ReleaseStatus(str, enum.Enum):
    """A release starts `pending` while a build or release phase gates it, then settles."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    def can_become(self, other: "ReleaseStatus") -> bool:
        return other in _RELEASE_TRANSITIONS[self]


_RELEASE_TRANSITIONS: dict[ReleaseStatus, frozenset[ReleaseStatus]] = {
    ReleaseStatus.PENDING: frozenset({ReleaseStatus.SUCCEEDED, ReleaseStatus.FAILED}),
    ReleaseStatus.SUCCEEDED: frozenset(),
    ReleaseStatus.FAILED: frozenset(),
}


class Role(str, enum.Enum):
    """Who a token speaks for (see docs/api.md, "Tokens and roles")."""

    USER = "user"        # the operator: every app and every token
    ROUTER = "router"    # follows the route feed, ships router log lines
    DYNOMGR = "dynomgr"  # one VM's dyno manager: its assignments, reports, slugs


@dataclass(frozen=True)
class App:
    id: str
    name: str
    maintenance: bool
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "App":
        return cls(row["id"], row["name"], bool(row["maintenance"]), row["created_at"],
                   row["updated_at"])


@dataclass(frozen=True)
class Slug:
    id: str
    app_id: str
    checksum: str  # "sha256:<hex>"
    size: int
    process_types: dict[str, str]
    created_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Slug":
        return cls(row["id"], row["app_id"], row["checksum"], int(row["size"]),
                   json.loads(row["process_types"]), row["created_at"])


@dataclass(frozen=True)
class Release:
    id: str
    app_id: str
    version: int
    slug_id: str | None
    description: str
    status: ReleaseStatus
    config: dict[str, str]
    created_at: str
    updated_at: str
    current: bool = False
    process_types: dict[str, str] = field(default_factory=dict)
    phase_output: str | None = None  # the tail of its release phase's output, once it ran

    @property
    def has_release_phase(self) -> bool:
        return RELEASE_PHASE in self.process_types

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, current_version: int | None) -> "Release":
        types = row.get("process_types")
        return cls(row["id"], row["app_id"], int(row["version"]), row["slug_id"],
                   row["description"], ReleaseStatus(row["status"]), json.loads(row["config"]),
                   row["created_at"], row["updated_at"],
                   current=int(row["version"]) == current_version,
                   process_types=json.loads(types) if types else {},
                   phase_output=row.get("phase_output"))


@dataclass(frozen=True)
class FormationEntry:
    app_id: str
    type: str
    quantity: int
    size: str
    command: str
    updated_at: str


@dataclass(frozen=True)
class Scaled:
    """What a batch scale left: the whole formation, and whether the batch changed it."""

    formation: list[FormationEntry]
    changed: bool


@dataclass(frozen=True)
class FormationUpdate:
    """One item of a batch scale: leave `quantity` or `size` None to keep it."""

    type: str
    quantity: int | None = None
    size: str | None = None


@dataclass(frozen=True)
class Domain:
    id: str
    app_id: str
    hostname: str
    created_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Domain":
        return cls(row["id"], row["app_id"], row["hostname"], row["created_at"])


@dataclass(frozen=True)
class Certificate:
    """An app's TLS certificate as listed: its leaf's facts, never its key."""

    id: str
    app_id: str
    source: str  # "uploaded" (certs:add) or "auto" (ACME)
    domain: str | None  # for "auto": the app domain it was issued for
    names: tuple[str, ...]
    not_before: str  # ISO 8601, UTC
    not_after: str
    issuer: str
    fingerprint: str  # SHA-256 of the leaf certificate, hex
    created_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Certificate":
        return cls(row["id"], row["app_id"], row["source"], row["domain"],
                   tuple(json.loads(row["names"])), row["not_before"], row["not_after"],
                   row["issuer"], row["fingerprint"], row["created_at"])


@dataclass(frozen=True)
class NewCertificate:
    """A checked certificate to store: the chain in PEM, the key already sealed."""

    source: str
    domain: str | None
    names: tuple[str, ...]
    not_before: str
    not_after: str
    issuer: str
    fingerprint: str
    chain: str
    key_sealed: str = field(repr=False)


@dataclass(frozen=True)
class SealedCertificate:
    """What the route feed sends: the chain and the sealed key (opened by the feed hub)."""

    id: str
    chain: str
    key_sealed: str = field(repr=False)


@dataclass(frozen=True)
class DrainStats:
    """How a drain's delivery went, as its owner last recorded (or this node sees it now)."""

    sent: int = 0  # lines the receiver took
    dropped: int = 0  # lines dropped because its buffer was full (reported as L10)
    retries: int = 0  # failed attempts, each tried again after a back-off
    last_error: str | None = None
    last_error_at: float | None = None  # Unix seconds

    def plus(self, other: "DrainStats") -> "DrainStats":
        """These totals with `other`'s counts added; `other`'s error if it has one."""
        error = other if other.last_error_at is not None else self
        return DrainStats(self.sent + other.sent, self.dropped + other.dropped,
                          self.retries + other.retries, error.last_error, error.last_error_at)


@dataclass(frozen=True)
class Drain:
    id: str
    app_id: str
    app: str  # the app's name
    url: str = field(repr=False)  # as given, credentials included: render it masked
    token: str  # `d.<uuid>`, its name in `drains` and the Logplex-Drain-Token header
    created_at: str
    cursor: int  # seq of the app's newest line it sent
    owner: str | None  # the control node delivering it
    lease_until: float | None
    lease_epoch: int
    stats: DrainStats

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Drain":
        until = row["lease_until"]
        error_at = row["last_error_at"]
        return cls(row["id"], row["app_id"], row["app"], row["url"], row["token"],
                   row["created_at"], int(row["cursor"]), row["owner"],
                   None if until is None else float(until), int(row["lease_epoch"]),
                   DrainStats(int(row["sent"]), int(row["dropped"]), int(row["retries"]),
                              row["last_error"], None if error_at is None else float(error_at)))


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    enabled: bool


@dataclass(frozen=True)
class AffinityKey:
    """A session affinity signing key (controlplane/store/affinity.py). `secret` (base64url)
    goes to routers in the route feed only; never into `repr`, an API answer or a log."""

    id: str
    secret: str = field(repr=False)
    generation: int  # the newest signs
    created_at: str

    @classmethod
    def from_row(cls, row) -> "AffinityKey":
        return cls(row["id"], row["secret"], int(row["generation"]), row["created_at"])


@dataclass(frozen=True)
class Token:
    id: str
    role: Role
    vm_id: str | None
    description: str
    created_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Token":
        return cls(row["id"], Role(row["role"]), row["vm_id"], row["description"],
                   row["created_at"])


@dataclass(frozen=True)
class IssuedToken:
    """A token as created: the secret is shown once and never stored."""

    token: Token
    secret: str


class VmState(str, enum.Enum):
    """A VM is `ready` while its dyno manager heart-beats; `lost` once it fell silent too long."""

    READY = "ready"
    LOST = "lost"


class ObservedState(str, enum.Enum):
    """What a dyno manager reports about a dyno (docs/feeds.md, "Reports")."""

    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    DOWN = "down"
    STOPPING = "stopping"


class TakeOut(str, enum.Enum):
    """What happens to a dyno once routers have it out of their tables."""

    STOP = "stop"        # removed from its VM's assignments (scale-down, ps:stop, a release)
    RESTART = "restart"  # its restart generation is bumped (ps:restart)


@dataclass(frozen=True)
class Vm:
    id: str
    address: str
    capacity_mb: int
    ports: tuple[int, int]
    version: str
    state: VmState
    registered_at: str
    heartbeat_at: float
    lost_at: str | None
    # What its dyno manager reported of its stack: {"interpreters": [{"version", "path"}]}.
    stack: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Vm":
        return cls(row["id"], row["address"], int(row["capacity_mb"]),
                   (int(row["port_low"]), int(row["port_high"])), row["version"],
                   VmState(row["state"]), row["registered_at"], float(row["heartbeat_at"]),
                   row["lost_at"], json.loads(row["stack"] or "{}"))


@dataclass(frozen=True)
class OneOff:
    """What makes a dyno one-off (`dynomesh run`, a release phase): it runs its own command
    once, is never restarted, and is removed when it exits."""

    command: str
    attach_url: str | None = None  # the control node its session waits on; None: detached
    tty: tuple[int, int] | None = None  # (columns, rows) of the caller's terminal, if any
    env: Mapping[str, str] = field(default_factory=dict)  # over the release's config vars
    timeout: int = 86400  # seconds from launch; then it is stopped
    release_phase: bool = False  # the release phase of its release

    def to_json(self) -> str:
        return json.dumps({"command": self.command, "attach_url": self.attach_url,
                           "tty": list(self.tty) if self.tty else None, "env": dict(self.env),
                           "timeout": self.timeout, "release_phase": self.release_phase},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "OneOff":
        data = json.loads(text)
        tty = data.get("tty")
        return cls(data["command"], data.get("attach_url"), tuple(tty) if tty else None,
                   data.get("env") or {}, int(data["timeout"]), bool(data.get("release_phase")))


@dataclass(frozen=True)
class Dyno:
    """One dyno as the control plane holds it: what it should be, and what was last seen."""

    id: str
    app_id: str
    type: str
    number: int
    release: int
    size: str
    memory_mb: int
    vm_id: str | None
    serving: bool
    restart_generation: int
    take_out: TakeOut | None
    take_out_revision: int | None
    take_out_at: float | None
    state: ObservedState | None
    address: str | None
    state_since: float | None
    restarts: int
    reason: str | None
    error_code: str | None
    created_at: str
    one_off: OneOff | None = None  # None: a dyno of the formation
    # A drain twin: the id of the dyno on a draining VM it takes over from (scheduler/drain.py).
    replaces: str | None = None
    # Why a running web dyno failed its app's health check N times in a row, as its dyno
    # manager reported it ("GET /health → 503 ×3"); None while healthy. Not routable then.
    unhealthy: str | None = None

    @property
    def name(self) -> str:
        return f"{self.type}.{self.number}"

    @property
    def is_web(self) -> bool:
        return self.type == "web"  # Heroku's rule: only `web` dynos get a port and routes

    @property
    def routable(self) -> bool:
        """Listed in its app's route entry: a serving web dyno reported up (and not unhealthy),
        not being taken out."""
        return (self.is_web and self.serving and self.take_out is None
                and self.vm_id is not None and self.state is ObservedState.UP
                and bool(self.address) and self.unhealthy is None)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Dyno":
        def optional(key: str, kind):
            value = row[key]
            return None if value is None else kind(value)

        return cls(row["id"], row["app_id"], row["type"], int(row["number"]),
                   int(row["release_version"]), row["size"], int(row["memory_mb"]),
                   row["vm_id"], bool(row["serving"]), int(row["restart_generation"]),
                   optional("take_out", TakeOut), optional("take_out_revision", int),
                   optional("take_out_at", float), optional("state", ObservedState),
                   row["address"], optional("state_since", float), int(row["restarts"]),
                   row["reason"], row["error_code"], row["created_at"],
                   optional("one_off", OneOff.from_json), row["replaces"], row["unhealthy"])


@dataclass(frozen=True)
class ObservedReport:
    """One OBSERVED entry of a dyno manager's report (docs/feeds.md)."""

    id: str
    state: ObservedState
    since: float
    address: str | None = None
    restarts: int = 0
    reason: str | None = None
    error_code: str | None = None
    release: int | None = None  # the release the reported process runs, when given
    # A one-off dyno's end: its command's exit status (None: killed, timed out, never ran)
    # and the tail of its output (a release phase's, shown by `releases`).
    exit_status: int | None = None
    output: str | None = None
    # A running web dyno that failed its health check N times in a row: why (None: healthy).
    unhealthy: str | None = None


@dataclass(frozen=True)
class VmRegistration:
    address: str
    capacity_mb: int
    ports: tuple[int, int]
    version: str
    stack: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VmLoad:
    """What is placed on one VM: memory quotas, dynos, web dynos (one port each), per app."""

    used_mb: int = 0
    dynos: int = 0
    web_dynos: int = 0
    app_dynos: Mapping[str, int] = field(default_factory=dict)  # app id -> dynos placed


# --- what the scheduler reads and writes ---

@dataclass(frozen=True)
class ProcessSpec:
    """One formation entry, as the planner needs it."""

    type: str
    quantity: int
    size: str
    memory_mb: int


@dataclass(frozen=True)
class AppSpec:
    """What an app should run: its current release that can run, formation and features."""

    id: str
    name: str
    release: int | None  # the current release that can run (has a slug); None: run nothing
    processes: Mapping[str, ProcessSpec]
    preboot: bool = False


@dataclass(frozen=True)
class NewDyno:
    """A dyno to create (the planner's `Create` is one)."""

    type: str
    number: int
    release: int
    size: str
    memory_mb: int
    serving: bool  # False: a preboot dyno that routes do not list until the switch

    @property
    def name(self) -> str:
        return f"{self.type}.{self.number}"


@dataclass(frozen=True)
class NodeProgress:
    """A control node's row in `control_nodes`: how far its route-feed followers got."""

    id: str
    seen_at: float
    route_followers: int
    route_revision: int


@dataclass(frozen=True)
class Leader:
    """Which control node schedules, since when (Unix seconds); None before any led."""

    node: str | None
    since: float | None


# --- what the feeds serve ---

@dataclass(frozen=True)
class RouteFacts:
    """What the store knows about one app that its route entry is derived from."""

    name: str
    maintenance: bool
    hosts: tuple[str, ...]  # the default hostname first
    has_release: bool  # a current release with a slug
    web_quantity: int
    web_dynos: tuple[Dyno, ...]
    certificates: tuple[SealedCertificate, ...] = ()  # oldest first
    # ACME HTTP-01 challenges being validated: (token, key authorization), by token
    acme_challenges: tuple[tuple[str, str], ...] = ()
    # The app's own router settings (`config:router`); None: the router's flag decides.
    request_timeout: float | None = None
    max_body_bytes: int | None = None
    session_affinity: bool = False  # the http-session-affinity feature


@dataclass(frozen=True)
class Assignment:
    """A dyno placed on a VM with what its dyno manager needs to run it."""

    dyno: Dyno
    app_name: str
    slug_id: str | None
    checksum: str | None  # "sha256:<hex>"; None only if the release lost its slug
    config: dict[str, str]
    # The app's health check for its web dynos (`config:router`); None: no check (interval and
    # failures None: the dyno manager's flags decide).
    health_check_path: str | None = None
    health_check_interval: float | None = None
    health_check_failures: int | None = None


class AddonState(str, enum.Enum):
    """Where an add-on's create or destroy stands; a crash leaves the first or the last, and
    running the same command again finishes it (controlplane/addons/service.py)."""

    PROVISIONING = "provisioning"      # recorded; the provider may have made part of it
    READY = "ready"                    # made, and its config var set on the app
    DEPROVISIONING = "deprovisioning"  # being removed from the provider


@dataclass(frozen=True)
class Addon:
    id: str
    app_id: str
    app_name: str
    kind: str        # the provider's kind, e.g. "postgresql"
    name: str        # what the user names it by, e.g. "postgresql-3f9a1c"
    resource: str    # the provider's own name for it (the database and role)
    config_var: str  # e.g. DATABASE_URL
    state: AddonState
    attached: bool   # its config var is set on the app
    created_at: str
    updated_at: str
    location: str | None = None  # the provider's server it lives on; None: not recorded

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Addon":
        return cls(row["id"], row["app_id"], row["app_name"], row["kind"], row["name"],
                   row["resource"], row["config_var"], AddonState(row["state"]),
                   bool(row["attached"]), row["created_at"], row["updated_at"],
                   row["location"])


class BuildStatus(str, enum.Enum):
    """A build is `pending` while it runs; `succeeded` made a slug and a release."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Build:
    id: str
    app_id: str
    number: int  # 1, 2, 3 … per app: what `builds` shows and `builds:output` takes
    status: BuildStatus
    source_checksum: str
    buildpack: str | None
    reason: str | None  # why it failed, in one line
    slug_id: str | None
    release_version: int | None
    node: str
    created_at: str
    finished_at: str | None
    output: str | None = None  # only when asked for

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Build":
        return cls(row["id"], row["app_id"], int(row["number"]), BuildStatus(row["status"]),
                   row["source_checksum"], row["buildpack"], row["reason"], row["slug_id"],
                   None if row["release_version"] is None else int(row["release_version"]),
                   row["node"], row["created_at"], row["finished_at"],
                   row["output"] if "output" in row.keys() else None)


@dataclass(frozen=True)
class AcmeDomain:
    """Where one custom domain's automatic certificate stands (store/acme.py)."""

    domain_id: str
    app_id: str
    app_name: str
    hostname: str
    status: str  # pending | issued | failed
    reason: str | None  # the CA's problem (or ours) when failed
    not_after: float | None  # Unix seconds: the issued certificate's expiry
    failures: int  # attempts failed in a row
    retry_at: float | None  # Unix seconds: the next attempt after a failure
    challenge: bool = False  # an HTTP-01 challenge is out for it now
