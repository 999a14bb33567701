"""Reporting to the control plane: registration, heartbeats and state changes (docs/feeds.md).

`ControlPlaneReporter` is a `Reporter` beside the stdout one. It

- registers the VM (`PUT /vms/{vm}`) before every connection to the assignment feed, and
  whenever a report finds the control plane had lost or forgotten it;
- heart-beats every 5 s with the full observed state of every dyno (`POST /vms/{vm}/heartbeat`);
- posts state changes as they happen (`POST /vms/{vm}/states`), batching what happens within a
  few milliseconds into one request, so routers hear of a new `up` dyno at once.

`state_changed()` only records the change and arms a timer: a dyno, and the event loop, never
wait for the control plane. While it is away, the latest change of each dyno is held (up to a
bound; the full state sent on return covers anything dropped), reports retry with back-off, and
when it answers again the agent registers again and sends its whole state before the held
changes that the full state does not already cover.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from dynomesh.backoff import BackoffPolicy
from dynomesh.feedclient import RECONNECT_BACKOFF
from dynomesh.tasks import cancel_and_wait

from dynomgr.control import (ControlError, ControlNotFound, ControlPlane, ControlRefused,
                             ControlRejected)
from dynomgr.events import LogLine, StateChange
from dynomgr.state import DynoState

# The states in which a dyno's address means something to a router or to `ps`.
_ADDRESSED = (DynoState.STARTING, DynoState.UP, DynoState.STOPPING)


@dataclass(frozen=True)
class ReportSettings:
    # docs/feeds.md: a heartbeat every 5 s; a VM silent for 15 s is lost.
    heartbeat_interval: float = 5.0
    # docs/feeds.md: changes that happen within a few milliseconds go in one post.
    batch_window: float = 0.005
    # Changes held while the control plane is away (the newest per dyno); beyond this the
    # oldest are dropped: the full state sent on return says where every live dyno is.
    max_pending: int = 10_000
    # Between failed attempts, as for the feeds: 0.1 s doubling to 5 s, with jitter.
    backoff: BackoffPolicy = RECONNECT_BACKOFF
    # On shutdown, how long the last changes (dynos stopped) may take to reach the control plane.
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "batch_window", "close_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"report {name.replace('_', ' ')} must be above 0 seconds")
        if self.max_pending < 1:
            raise ValueError("report max pending must be at least 1")


class WrongToken(ControlRefused):
    """The token works but is not a dyno manager's (bound to a VM)."""


def observed_of_change(change: StateChange) -> dict[str, Any]:
    """The OBSERVED shape (docs/feeds.md) of one state change."""
    ref = change.dyno
    return {"id": ref.id, "app": ref.app, "name": ref.name, "release": ref.release,
            "state": change.new.value,
            "address": change.address if change.new in _ADDRESSED else None,
            "since": change.at, "restarts": change.restarts, "reason": change.reason,
            "error_code": change.error_code, "unhealthy": change.unhealthy,
            **_ending(change.exit_status, change.output)}


def observed_of_dyno(dyno) -> dict[str, Any]:
    """The OBSERVED shape of a dyno as it is now (for heartbeats)."""
    ref = dyno.ref
    return {"id": ref.id, "app": ref.app, "name": ref.name, "release": ref.release,
            "state": dyno.state.value,
            "address": dyno.address if dyno.state in _ADDRESSED else None,
            "since": dyno.since, "restarts": dyno.restarts, "reason": dyno.reason,
            "error_code": dyno.error_code, "unhealthy": dyno.unhealthy,
            **_ending(dyno.exit_status, dyno.output_tail)}


def _ending(exit_status: int | None, output: str | None) -> dict[str, Any]:
    """A one-off dyno's end, sent with its `down` state (and every heartbeat after it)."""
    return {"exit_status": exit_status, "output": output} if output is not None else {}


def report_key(ref) -> str:
    """One dyno across its changes: the control plane's id, else this agent's instance."""
    return ref.id if ref.id is not None else ref.instance


class ControlPlaneReporter:
    def __init__(self, control: ControlPlane, registration: dict[str, Any], log, metrics, *,
                 settings: ReportSettings | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.control = control
        self.registration = registration  # the PUT /vms/{vm} body: address, capacity, ports
        self.settings = settings or ReportSettings()
        self._agent_log = log
        self.metrics = metrics
        self.vm_id: str | None = None
        self.reachable = False  # the last request reached the control plane
        self.last_report_at: float | None = None  # clock() of the last accepted report
        self._clock = clock
        self._rng = rng or random.Random()
        self._dynos: Callable[[], Iterable] = lambda: ()
        self._pending: dict[str, dict[str, Any]] = {}
        self._registered = False
        self._need_full = True
        self._wake: asyncio.Event | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()  # one request at a time, in order
        self._task: asyncio.Task[None] | None = None
        self._away_since: float | None = None
        self._last_complaint = float("-inf")
        self._closed = False

    def watch(self, dynos: Callable[[], Iterable]) -> None:
        """Where the full observed state comes from (the reconciler's dynos)."""
        self._dynos = dynos

    # -- Reporter -----------------------------------------------------------------------------

    def state_changed(self, change: StateChange) -> None:
        key = report_key(change.dyno)
        self._pending.pop(key, None)  # re-inserted last: the dict stays oldest-first
        self._pending[key] = observed_of_change(change)
        if len(self._pending) > self.settings.max_pending:
            del self._pending[next(iter(self._pending))]
            self.metrics.report_changes_dropped.inc()
        if self._flush_timer is None and self._wake is not None and self._registered:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(self.settings.batch_window, self._flush_due)

    def log(self, line: LogLine) -> None:
        return None  # log lines reach the control plane with the log stream, not here

    def _flush_due(self) -> None:
        self._flush_timer = None
        if self._wake is not None:
            self._wake.set()

    # -- identity and registration ------------------------------------------------------------

    async def register(self) -> None:
        """Register this VM (learning its id from the token the first time). Called before
        every connection to the assignment feed; raises `ControlError`."""
        async with self._lock:
            try:
                if self.vm_id is None:
                    self.vm_id = await self._identify()
                await self.control.call("PUT", f"/vms/{self.vm_id}", self.registration)
            except ControlError as error:
                self._count("register", error)
                self._failed(error, say=False)  # the feed, which asked, says it
                raise
            self._count("register", None)
            self._registered = True
            self._need_full = True  # the control plane hears the whole state after each register
            self._succeeded()
        if self._task is None and not self._closed:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._send_loop(),
                                                                name="reports")
        self._wake.set()

    async def _identify(self) -> str:
        account = await self.control.call("GET", "/account")
        vm_id = account.get("vm_id") if isinstance(account, dict) else None
        if not isinstance(vm_id, str) or not vm_id:
            role = account.get("role") if isinstance(account, dict) else "unknown"
            raise WrongToken(403, f"this is a {role} token; a dyno manager needs a dynomgr "
                                  "token bound to its VM (dynomesh tokens:create --role "
                                  "dynomgr --vm-id ID)")
        return vm_id

    def resync(self) -> None:
        """Send the full state now (the assignment feed just came back)."""
        self._need_full = True
        if self._wake is not None:
            self._wake.set()

    # -- sending ------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        backoff = self.settings.backoff.start(self._rng)
        next_heartbeat = self._clock()
        while True:
            pause = max(0.0, next_heartbeat - self._clock())
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
                # that arrives as the event is set, and aclose() would wait forever.
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            except TimeoutError:
                pass  # time for a heartbeat
            self._wake.clear()
            try:
                async with self._lock:
                    if not self._registered:
                        await self._call("register", "PUT", f"/vms/{self.vm_id}",
                                         self.registration)
                        self._registered, self._need_full = True, True
                    if self._need_full or self._clock() >= next_heartbeat:
                        await self._send_full()
                        next_heartbeat = self._clock() + self.settings.heartbeat_interval
                    if self._pending:
                        await self._send_pending()
                    self._succeeded()
                backoff.reset()
            except ControlError as error:
                self._failed(error)
                await asyncio.sleep(backoff.next_delay())
                self._wake.set()  # and try again

    async def _send_full(self) -> None:
        live = list(self._dynos())
        dynos = [observed_of_dyno(d) for d in live]
        # The full state supersedes what is held for the dynos in it; changes of dynos that
        # ended since (stopped, removed) go first, then the whole picture.
        present = {report_key(d.ref) for d in live}
        for key in present & self._pending.keys():
            del self._pending[key]
        if self._pending:
            await self._send_pending()
        await self._call("heartbeat", "POST", f"/vms/{self.vm_id}/heartbeat", {"dynos": dynos})
        self._need_full = False

    async def _send_pending(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            await self._call("states", "POST", f"/vms/{self.vm_id}/states",
                             {"changes": list(batch.values())})
        except ControlRejected as error:
            # Not a passing fault: the control plane refuses these reports as such. Say so and
            # drop them (the next heartbeat carries the state of every live dyno).
            self._agent_log.error(f"the control plane refused {len(batch)} state changes: {error}")
            self.metrics.report_changes_dropped.inc(len(batch))
        except ControlError:
            # Held again, older than anything that arrived meanwhile.
            newer, self._pending = self._pending, {}
            for key, value in batch.items():
                if key not in newer:
                    self._pending[key] = value
            self._pending.update(newer)
            raise

    async def _call(self, kind: str, method: str, path: str, body: Any) -> None:
        try:
            await self.control.call(method, path, body)
        except ControlError as error:
            self._count(kind, error)
            if isinstance(error, ControlNotFound):
                self._registered = False  # the control plane forgot this VM: register again
            raise
        self._count(kind, None)
        self.last_report_at = self._clock()

    def _count(self, kind: str, error: ControlError | None) -> None:
        outcome = "ok" if error is None else ("rejected" if isinstance(error, ControlRejected)
                                              else "failed")
        self.metrics.reports.labels(kind, outcome).inc()

    # -- reachability, said once ---------------------------------------------------------------

    def _failed(self, error: ControlError, *, say: bool = True) -> None:
        now = self._clock()
        if not isinstance(error, ControlRejected):
            self._registered = False
            self._need_full = True
        if self.reachable or self._away_since is None:
            self.reachable = False
            self._away_since = now
            if not say:
                return
            self._last_complaint = now
            self._agent_log.error(f"cannot report to the control plane: {error}; dynos keep "
                                  "running, changes are held and sent when it answers again")
        elif say and now - self._last_complaint >= 60:
            self._last_complaint = now
            self._agent_log.error(f"still cannot report to the control plane "
                                  f"(for {now - self._away_since:.0f} s): {error}")

    def _succeeded(self) -> None:
        if not self.reachable:
            if self._away_since is not None and self._last_complaint > float("-inf"):
                away = self._clock() - self._away_since
                self._agent_log.info(f"reporting to {self.control.url} again after {away:.1f} "
                                     f"s; registered VM {self.vm_id} and sent the full state")
            self.reachable = True
            self._away_since = None

    # -- shutdown -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send what is still held (the last stops), briefly, then stop reporting."""
        self._closed = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
            if self._pending and self._registered:
                try:
                    async with asyncio.timeout(self.settings.close_timeout):
                        await self._send_pending()
                except (ControlError, TimeoutError) as error:
                    self._agent_log.error(f"{len(self._pending)} last state changes not "
                                          f"reported: {error or 'timed out'}")
        await self.control.aclose()
