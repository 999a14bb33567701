"""One dyno: launches its process, watches it boot, restarts it after crashes, stops it.

A `Dyno` owns one assignment for its whole life; a changed assignment is a new `Dyno` (the
reconciler stops the old one first). Each launch is a *life*: a fresh directory, a port, a
marker and a process, all torn down when the process ends, whatever the reason. Between lives
the `RestartPolicy` decides how long the dyno stays `crashed`.

Two ways out, kept apart: `stop()` (the dyno is no longer wanted, or the agent shuts down: SIGTERM,
grace period, SIGKILL) and the process ending on its own (a crash, then a restart). A third
leaves it running: `detach()` (the agent exits for an upgrade) records it for the next agent,
whose `Dyno(..., kept=...)` adopts the running process as its first life (dynomgr/adoption.py).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import subprocess

from dynomesh.poll import poll_until
from dynomesh.tasks import cancel_and_wait

from dynomgr.adoption import HandOver
from dynomgr.assignments import Assignment
from dynomgr.attached import spawn_attached
from dynomgr.errors import LaunchError
from dynomgr.events import DynoRef, LogLine, StateChange
from dynomgr.life import Life, Outcome
from dynomgr.markers import DynoMarker, MarkerError
from dynomgr.memory import MB, MemoryVerdict, judge, usage_text
from dynomgr.oneoff import OneOffRun
from dynomgr.ports import PortsExhausted
from dynomgr.handover import KeptDyno
from dynomgr.process import LaunchSpec, WatchedProcess, exit_status, exit_text
from dynomgr.procfile import command_of
from dynomgr.health import HealthPolicy, Verdict
from dynomgr.readiness import health_check_status, poll_health
from dynomgr.restart import RestartPolicy
from dynomgr.services import DynoServices
from dynomgr.slugs import unpack
from dynomgr.state import DynoState, check_transition
from dynomgr.users import UserError

# How long to wait for a dyno's last output lines after its main process exits.
_OUTPUT_GRACE = 0.1
# SIGKILL is not refusable; this only bounds the wait for the kernel to finish the job.
_KILL_WAIT = 10.0


class Dyno(HandOver, OneOffRun):
    def __init__(self, assignment: Assignment, services: DynoServices,
                 kept: KeptDyno | None = None) -> None:
        """`kept`: adopt this dyno, left running by a previous agent, instead of launching."""
        self.assignment = assignment
        self.services = services
        self.ref = DynoRef(
            app=assignment.app,
            name=assignment.name,
            type=assignment.type,
            release=assignment.release,
            instance=kept.instance if kept else secrets.token_hex(4),
            id=assignment.id,
        )
        self.state = DynoState.DOWN
        self.since = services.wallclock()
        self.restarts = 0
        self.address: str | None = None
        # Why the last transition happened (a crash's "Boot timeout" and "R10"), for reports.
        self.reason: str | None = None
        self.error_code: str | None = None
        # Why the running health check took it out of the routers' tables (None: healthy).
        self.unhealthy: str | None = None
        self.memory_bytes: int | None = None
        self.memory_quota_bytes = assignment.memory_mb * MB
        self._policy = RestartPolicy(services.config.restart, services.clock, services.rng)
        self._stop_requested = asyncio.Event()
        self._stop_reason = "stopped"
        self._memory_kill = asyncio.Event()
        self._life: Life | None = None
        self._lives = 0
        self._task: asyncio.Task[None] | None = None
        self._app_lines = services.metrics.log_lines.labels("app")
        self._platform_lines = services.metrics.log_lines.labels("heroku")
        self._kept = kept
        self._kept_record: KeptDyno | None = None  # what detach() left for the next agent
        self._detaching = False
        self._one_off_init()
        if kept is not None:
            # It goes on in the state the previous agent reported: no transition, no restart.
            self.state, self.since, self.address = kept.state, kept.since, kept.address
            self.restarts = kept.restarts
            self.unhealthy = kept.unhealthy
            self._policy.resume(kept.crashes)
            self._lives = kept.life - 1

    # Views for metrics, the admin API and memory sampling.

    @property
    def app(self) -> str:
        return self.ref.app

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def pid(self) -> int | None:
        life = self._life
        return life.process.pid if life and life.process and not life.process.exited.done() else None

    # Control.

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dyno {self.app} {self.name}")

    async def stop(self, reason: str) -> None:
        """Stop the dyno (SIGTERM, grace period, SIGKILL) and return once it is down."""
        if not self._stop_requested.is_set():
            self._stop_reason = reason
            self._stop_requested.set()
            if self._task is None or not self._task.done():  # (a one-off dyno may be over)
                self._say(reason)
        if self._task is not None:
            await asyncio.shield(self._task)

    def observe_memory(self, rss_bytes: int) -> None:
        """A memory sample of this dyno's processes (from the agent's /proc pass)."""
        self.memory_bytes = rss_bytes
        if self.state not in (DynoState.STARTING, DynoState.UP) or self.pid is None:
            return
        cfg = self.services.config
        verdict = judge(rss_bytes, self.assignment.memory_mb, cfg.memory_kill_ratio)
        if verdict is MemoryVerdict.OK or self._memory_kill.is_set():
            return
        self._say(f"Process running {usage_text(rss_bytes, self.assignment.memory_mb)}")
        if verdict is MemoryVerdict.OVER_QUOTA:
            self._error("R14", "Error R14 (Memory quota exceeded)")
        else:
            self._error("R15", "Error R15 (Memory quota vastly exceeded)")
            self._memory_kill.set()

    # The dyno's life cycle.

    async def _run(self) -> None:
        try:
            while not self._stop_requested.is_set():
                try:
                    outcome = await self._live_once()
                except Exception as exc:  # a bug: count it, say so, and treat it as a crash
                    self.services.metrics.internal_errors.labels("dyno").inc()
                    self._say(f"Error: dyno manager fault while running this dyno: {exc!r}")
                    if self.state in (DynoState.STARTING, DynoState.UP):
                        self._transition(DynoState.CRASHED, reason=f"internal error: {exc!r}")
                    outcome = Outcome.CRASHED
                if outcome in (Outcome.STOPPED, Outcome.DETACHED):
                    break
                if self.is_one_off:  # it could not start: it is over all the same
                    self._stop_reason = self.reason or self._stop_reason
                    break
                if outcome is Outcome.CYCLED:
                    continue
                if outcome is Outcome.FAILED:
                    await self._stop_requested.wait()
                    break
                decision = self._policy.crashed()
                if await self._stopped_within(decision.delay):
                    break
                self.restarts += 1
                self.services.metrics.restarts.labels(self.app, self.ref.type).inc()
        finally:
            if self.state is DynoState.CRASHED:
                self._transition(DynoState.DOWN, reason=self._stop_reason)

    async def _stopped_within(self, delay: float) -> bool:
        if delay <= 0:
            return self._stop_requested.is_set()
        try:
            async with asyncio.timeout(delay):
                await self._stop_requested.wait()
        except TimeoutError:
            return False
        return True

    async def _live_once(self) -> Outcome:
        self._lives += 1
        life = self._life = Life(self._lives)
        self._memory_kill.clear()
        self.memory_bytes = None
        kept, self._kept = self._kept, None
        try:
            return await (self._live(life) if kept is None else self._adopt(life, kept))
        finally:
            await self._teardown(life)

    async def _live(self, life: Life) -> Outcome:
        svc = self.services
        if self._ran_before():
            return self._not_again()
        try:
            if self.assignment.is_web:
                life.port = svc.ports.allocate()
                self.address = f"{svc.config.advertise_host}:{life.port}"
        except PortsExhausted as exc:
            self._transition(DynoState.STARTING)
            return self._launch_failed(LaunchError(str(exc)))
        if life.port is not None:
            # Watch the port from now on: `up` is reported from the watcher's own tick, not
            # after this coroutine has worked its way back through a busy event loop.
            life.listening = svc.listen.watch(life.port)
            life.listening.add_done_callback(lambda future: self._port_listening(life, future))
        self._transition(DynoState.STARTING)

        prepare = asyncio.ensure_future(self._prepare(life))
        if not await self._first(prepare):
            await _cancel(prepare)
            if self._detaching:
                return Outcome.STOPPED  # never launched: the next agent launches it
            self._transition(DynoState.STOPPING, reason=self._stop_reason)
            self._transition(DynoState.DOWN, reason=self._stop_reason)
            return Outcome.STOPPED
        try:
            spec = prepare.result()
        except LaunchError as exc:
            return self._launch_failed(exc)

        self._say(f"Starting process with command `{spec.command}`")
        try:
            if life.session is not None:
                process = await spawn_attached(spec, svc.spawner.setpriv, life.session,
                                               self.assignment.one_off.tty,
                                               lambda p: self._started(life, p))
            else:
                process = await svc.spawner.spawn(
                    spec, self._on_output, svc.config.max_line_bytes, lambda p: self._started(life, p)
                )
        except (OSError, subprocess.SubprocessError) as exc:
            return self._launch_failed(LaunchError(f"cannot start the process: {exc}"))
        self._write_record(life)
        return await self._watch(life, process)

    def _started(self, life: Life, process: WatchedProcess) -> None:
        life.process = process
        life.launched = self.services.clock()
        self._policy.started()
        if life.listening is not None and life.listening.done():
            self._port_listening(life, life.listening)  # it was quicker than our bookkeeping

    def _port_listening(self, life: Life, future: asyncio.Future[None]) -> None:
        """The watcher saw the port listening: a web dyno without health check is up now."""
        if future.cancelled() or self._life is not life or self.assignment.health_check is not None:
            return
        process = life.process
        if self.state is DynoState.STARTING and process is not None and not process.exited.done():
            self._mark_up(life)

    def _mark_up(self, life: Life) -> None:
        self.services.metrics.boot_seconds.observe(self.services.clock() - life.launched)
        self._transition(DynoState.UP)

    async def _watch(self, life: Life, process: WatchedProcess) -> Outcome:
        svc = self.services
        boot = asyncio.ensure_future(self._boot(life))
        try:
            # From the launch: an adopted dyno has used part of it under the previous agent.
            timeout = max(0.0, svc.config.boot_timeout - (svc.clock() - life.launched))
            if not await self._first(boot, process.exited, self._memory_kill.wait(), timeout=timeout):
                return await self._stop_or_detach(life, process)
            if not boot.done():
                if process.exited.done() or self._memory_kill.is_set():
                    return await self._ended(life, process)
                self._error("R10", f"Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {svc.config.boot_timeout:g} seconds of launch")
                return await self._kill_and_crash(life, process, "Boot timeout", "R10")
            boot.result()  # re-raises a fault of the boot check itself
        finally:
            await _cancel(boot)

        if self.state is DynoState.STARTING:  # not yet marked up by the port watcher
            self._mark_up(life)
        self._start_health_poll(life)
        cycle_in = None
        if self.is_one_off:  # never cycled: its time limit ends it instead
            cycle_in = self._one_off_timeout(life)
        elif svc.config.cycling is not None:
            jitter = svc.rng.uniform(0, svc.config.cycling.jitter)
            cycle_in = max(0.0, life.launched + svc.config.cycling.after + jitter - svc.clock())
        if not await self._first(process.exited, self._memory_kill.wait(), timeout=cycle_in):
            return await self._stop_or_detach(life, process)
        if process.exited.done() or self._memory_kill.is_set():
            return await self._ended(life, process)
        if self.is_one_off:
            timeout = self.assignment.one_off.timeout
            self._say(f"Stopping: it ran for its whole time limit ({timeout} s)")
            return await self._graceful_stop(life, process, f"timed out after {timeout} s")
        self._say("Cycling")
        await self._graceful_stop(life, process, "Cycling")
        return Outcome.CYCLED

    async def _first(self, *aws, timeout: float | None = None) -> bool:
        """Wait for the first of `aws` or the timeout; False when stop() came first.

        Futures passed in are left alone (a process's exit, a boot check); coroutines are
        wrapped here and cancelled here."""
        stop = asyncio.ensure_future(self._stop_requested.wait())
        waits, own = [stop], [stop]
        for aw in aws:
            future = asyncio.ensure_future(aw)
            waits.append(future)
            if future is not aw:
                own.append(future)
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in own:
                task.cancel()
        return not self._stop_requested.is_set()

    async def _boot(self, life: Life) -> None:
        """Return once the dyno is up: at once for non-web types, else port plus health check."""
        if life.listening is None:
            return
        svc = self.services
        await asyncio.shield(life.listening)
        path = self.assignment.health_check
        if path is None:
            return
        interval = svc.config.health_check_interval
        while True:
            status = await health_check_status("127.0.0.1", life.port, path, timeout=max(interval, 1.0))
            if status is not None and 200 <= status < 400:
                return
            await asyncio.sleep(interval)

    def _start_health_poll(self, life: Life) -> None:
        """Up: a web dyno whose app has a health check is checked on, not only at boot."""
        path = self.assignment.health_check
        if path is None or life.port is None:
            return
        cfg, a = self.services.config, self.assignment
        interval = a.health_check_interval or cfg.health_check_every
        policy = HealthPolicy(path, a.health_check_failures or cfg.health_check_failures,
                              min(cfg.health_check_timeout, interval),
                              unhealthy=self.unhealthy is not None)  # an adopted dyno's
        life.health_poll = asyncio.ensure_future(poll_health(
            life.port, policy, interval, lambda verdict: self._health_changed(policy, verdict)))

    def _health_changed(self, policy: HealthPolicy, verdict: Verdict) -> None:
        """Reported like a state change from `up` to `up` (events.py words it), so that the
        control plane takes the dyno out of (or back into) its app's route entry."""
        if self.state is not DynoState.UP:
            return  # on its way down: that change says all
        self.unhealthy = policy.reason() if verdict is Verdict.UNHEALTHY else None
        change = StateChange(dyno=self.ref, old=DynoState.UP, new=DynoState.UP,
                             at=self.services.wallclock(), address=self.address, pid=self.pid,
                             restarts=self.restarts, unhealthy=self.unhealthy)
        self.since = change.at  # a report is applied only if newer than the last one
        self.reason = self.error_code = None
        self.services.metrics.health_changes.labels(verdict.value).inc()
        self.services.reporter.state_changed(change)

    # Ways a life ends.

    def _launch_failed(self, error: LaunchError) -> Outcome:
        self._say(error.log_text())
        if error.code is not None:
            self.services.metrics.errors.labels(error.code).inc()
        self._transition(DynoState.CRASHED, reason=str(error), code=error.code)
        return Outcome.FAILED if error.permanent else Outcome.CRASHED

    async def _ended(self, life: Life, process: WatchedProcess) -> Outcome:
        """The process exited on its own, or must die for its memory (R15)."""
        if self._memory_kill.is_set() and not process.exited.done():
            return await self._kill_and_crash(life, process, "Memory quota vastly exceeded", "R15")
        ended = await self._reap(life, process)
        # The dyno is over: whatever its main process left behind goes with it (as on Heroku,
        # where the container is torn down), before anyone hears that it crashed.
        await self._kill_all(life, process)
        await self._all_gone(life, process, _KILL_WAIT)
        if self.is_one_off:  # it ran: done, whatever its status (never restarted)
            code = process.exited.result()
            self.exit_status = None if code is None else exit_status(code)
            self._transition(DynoState.DOWN, reason=ended)
            return Outcome.STOPPED
        self._transition(DynoState.CRASHED, reason=ended)
        return Outcome.CRASHED

    async def _kill_and_crash(self, life: Life, process: WatchedProcess, reason: str, code: str) -> Outcome:
        self._say("Stopping process with SIGKILL")
        await self._kill_all(life, process)
        await self._all_gone(life, process, _KILL_WAIT)
        await self._reap(life, process)
        self._transition(DynoState.CRASHED, reason=reason, code=code)
        return Outcome.CRASHED

    async def _graceful_stop(self, life: Life, process: WatchedProcess, reason: str) -> Outcome:
        """SIGTERM to every process of the dyno; SIGKILL what is left after the stop timeout."""
        svc = self.services
        self._transition(DynoState.STOPPING, reason=reason)
        self._say("Stopping all processes with SIGTERM")
        process.signal_group(signal.SIGTERM)
        if life.marker is not None:
            await svc.markers.signal(life.marker, signal.SIGTERM, except_group=process.pid)
        timeout = svc.config.stop_timeout
        if not await self._all_gone(life, process, timeout):
            self._error("R12", f"Error R12 (Exit timeout) -> At least one process failed to exit within {timeout:g} seconds of SIGTERM")
            self._say("Stopping remaining processes with SIGKILL")
            await self._kill_all(life, process)
            await self._all_gone(life, process, _KILL_WAIT)
        await self._reap(life, process)
        self._transition(DynoState.DOWN, reason=reason)
        return Outcome.STOPPED

    async def _kill_all(self, life: Life, process: WatchedProcess) -> None:
        process.signal_group(signal.SIGKILL)
        if life.marker is not None:
            await self.services.markers.signal(life.marker, signal.SIGKILL)

    async def _kill_marked(self, marker: DynoMarker) -> None:
        """SIGKILL every process carrying `marker` and wait (bounded) until they are gone."""
        await self.services.markers.signal(marker, signal.SIGKILL)
        await self._marked_gone(marker, _KILL_WAIT)

    async def _marked_gone(self, marker: DynoMarker, timeout: float) -> bool:
        """Wait up to `timeout` seconds until no process carries `marker`; True if none does
        (leaving is not announced: polled)."""
        markers = self.services.markers

        async def gone() -> bool:
            return not await markers.members(marker)

        return await poll_until(gone, timeout, clock=self.services.clock)

    async def _all_gone(self, life: Life, process: WatchedProcess, timeout: float) -> bool:
        """Wait until the main process and every marked process have exited."""
        clock = self.services.clock
        deadline = clock() + timeout
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(process.exited)
        except TimeoutError:
            return False
        await self._reap(life, process)
        return life.marker is None or await self._marked_gone(life.marker, deadline - clock())

    async def _reap(self, life: Life, process: WatchedProcess) -> str:
        """Wait for the main process to exit and log its status, once; returns those words."""
        text = exit_text(await process.exited)
        if not life.exit_logged:
            life.exit_logged = True
            await process.output_drained(_OUTPUT_GRACE)
            self._say(text)
        return text

    async def _teardown(self, life: Life) -> None:
        """Undo everything a life created. Nothing of the dyno survives its life."""
        svc = self.services
        if life.health_poll is not None:
            await _cancel(life.health_poll)
        if life.listening is not None:
            svc.listen.forget(life.port, life.listening)
        await self._close_session(life)
        if life.kept:
            return  # the process, its directory, FIFO, marker and record are the next agent's
        process = life.process
        if process is not None:
            if not process.exited.done() or (life.marker and await svc.markers.members(life.marker)):
                await self._kill_all(life, process)
                await self._all_gone(life, process, _KILL_WAIT)
            process.close()
        elif life.marker is not None and await svc.markers.members(life.marker):
            await self._kill_marked(life.marker)  # no process object: what runs is found by marker
        if process is not None or life.outputs is not None:
            svc.data_dir.remove_record(life.record_id(self.ref))
        if life.marker is not None:
            try:
                await svc.markers.release(life.marker)
            except MarkerError as exc:
                svc.metrics.internal_errors.labels("marker").inc()
                self._say(f"Error: {exc}")
        if life.port is not None:
            svc.ports.release(life.port)
        if life.directory is not None:
            try:
                await asyncio.to_thread(shutil.rmtree, life.directory)
            except OSError as exc:
                svc.metrics.internal_errors.labels("cleanup").inc()
                self._say(f"Error: cannot remove {life.directory}: {exc.strerror}")
        if self._life is life:
            self._life = None

    # Preparing a launch.

    async def _prepare(self, life: Life) -> LaunchSpec:
        svc, a = self.services, self.assignment
        await self._open_session(life)
        try:
            run_as = await svc.users.for_app(a.app)
        except UserError as exc:
            raise LaunchError(str(exc)) from exc
        slug = await svc.slugs.get(a.slug)
        owner = (run_as.uid, run_as.gid) if run_as.switches else None
        try:
            life.directory = svc.data_dir.dyno_dir(a.app, a.name, life.record_id(self.ref))
            await asyncio.to_thread(unpack, slug, a.slug.url, life.directory, owner)
        except OSError as exc:
            where = exc.filename or life.directory or svc.data_dir.dynos
            raise LaunchError(f"cannot unpack the slug: {where}: {exc.strerror}") from exc
        command = command_of(self.assignment, life.directory)
        try:
            life.marker = svc.markers.create(life.record_id(self.ref))
        except MarkerError as exc:
            raise LaunchError(str(exc)) from exc
        env = svc.stack.env_for(life.directory)
        env.update(a.env)
        env.update(life.marker.env)
        # The platform's variables win over config vars of the same name (as on Heroku).
        env.update({"DYNO": a.name, "PS": a.name, "HOME": str(life.directory)})
        if life.port is not None:
            env["PORT"] = str(life.port)
        life.outputs = svc.data_dir.output_fifos(life.record_id(self.ref))
        return LaunchSpec(command, life.directory, env, run_as, life.marker, life.outputs)

    def _write_record(self, life: Life) -> None:
        process = life.process
        life.start_ticks = process.start_ticks
        record = {
            "app": self.app,
            "dyno": self.name,
            "pid": process.pid,
            "start_ticks": process.start_ticks,
            "marker": life.marker.value if life.marker else None,
            # A successor after a crash must not run a one-off dyno again (it ran once).
            **({"one_off": self.assignment.id} if self.is_one_off and self.assignment.id else {}),
        }
        try:
            self.services.data_dir.write_record(life.record_id(self.ref), record)
        except OSError as exc:
            # The marker still finds this dyno after an agent crash; say that the record is missing.
            self.services.metrics.internal_errors.labels("record").inc()
            self._say(f"Error: cannot record pid {process.pid} in {self.services.data_dir.run}: {exc.strerror}")

    # Reporting.

    def _transition(self, new: DynoState, *, reason: str | None = None, code: str | None = None) -> None:
        svc = self.services
        old = self.state
        check_transition(self.name, old, new)
        change = StateChange(
            dyno=self.ref,
            old=old,
            new=new,
            at=svc.wallclock(),
            address=self.address,
            pid=self.pid,
            reason=reason,
            error_code=code,
            restarts=self.restarts,
            **(self._one_off_ending() if new is DynoState.DOWN else {}),
        )
        self.state, self.since = new, change.at
        self.reason, self.error_code = reason, code
        self.unhealthy = None  # health is a running web dyno's; a new state starts afresh
        svc.metrics.state_changes.labels(new.value).inc()
        svc.reporter.state_changed(change)

    def _say(self, text: str) -> None:
        self._platform_lines.inc()
        self.services.reporter.log(LogLine(self.ref, "heroku", text, self.services.wallclock()))

    def _error(self, code: str, text: str) -> None:
        self.services.metrics.errors.labels(code).inc()
        self._say(text)

    def _on_output(self, text: str) -> None:
        if self._tail is not None:
            self._tail.add(text)
        self._app_lines.inc()
        self.services.reporter.log(LogLine(self.ref, "app", text, self.services.wallclock()))


async def _cancel(task: asyncio.Future) -> None:
    """Cancel a step whose outcome no longer matters (the dyno is being stopped)."""
    try:
        await cancel_and_wait(task)
    except LaunchError:
        pass  # a launch that failed just as it was abandoned: nothing was started
