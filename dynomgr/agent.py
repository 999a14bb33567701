"""The dyno manager agent: one event loop running every dyno of this VM.

It stops whatever a crashed predecessor left, takes full desired sets from its source and hands
them to the reconciler, samples memory for all dynos in one /proc pass, serves the admin
endpoints, and on SIGTERM drains: every dyno is stopped (SIGTERM, grace period, SIGKILL), then
the agent exits 0. SIGHUP asks the source for a fresh read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Iterable

from dynomesh import logline
from dynomesh.ready import Readiness
from dynomesh.tasks import cancel_and_wait

from dynomgr import procscan
from dynomgr.admin import AdminServer
from dynomgr.assignments import AssignmentSet, AssignmentsError
from dynomgr.dyno import Dyno
from dynomgr.markers import MarkerError
from dynomgr.memory import MemorySampler
from dynomgr.reconciler import Reconciler
from dynomgr.services import DynoServices
from dynomgr.sources import AssignmentSource


class AgentLog:
    """The agent's own messages (not about one dyno): one line each on stderr."""

    def __init__(self, stream=None) -> None:
        self._stream = stream or sys.stderr

    def info(self, message: str) -> None:
        self._write(message)

    def error(self, message: str) -> None:
        self._write(f"error: {message}")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(f"{logline.rfc5424_timestamp()} dynomgr: {text}\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr is gone; there is nowhere left to say it


class Agent:
    def __init__(self, services: DynoServices, source: AssignmentSource, log: AgentLog,
                 ready: Readiness | None = None) -> None:
        self.services = services
        self.source = source
        self.log = log
        self.ready = ready or Readiness()  # a supervisor's ready pipe (dynomesh/ready.py)
        self.reconciler = Reconciler(lambda assignment: Dyno(assignment, services))
        self.admin: AdminServer | None = None
        self._shutdown = asyncio.Event()
        self._draining = False
        services.metrics.watch_dynos(self.reconciler.dynos)

    @property
    def draining(self) -> bool:
        return self._draining

    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit status."""
        try:
            return await self._run()
        finally:
            await self.close()

    async def _run(self) -> int:
        svc = self.services
        # The admin endpoints come first: while a feed's first snapshot is awaited (the control
        # plane may be away), /healthz already says so.
        if svc.config.admin is not None:
            self.admin = AdminServer(svc.metrics, self.reconciler.dynos, lambda: self._draining,
                                     self.source.status)
            try:
                await self.admin.start(*svc.config.admin)
            except OSError as exc:
                host, port = svc.config.admin
                self.log.error(f"admin address {host}:{port} cannot be used: {exc.strerror}; pick another with --admin HOST:PORT")
                return 2
            host, port = self.admin.address
            self.log.info(f"admin endpoints on http://{host}:{port}/healthz and /metrics")
            self.ready.announce(admin=f"http://{host}:{port}")
        else:
            self.ready.announce(admin=None)
        try:
            initial = await self._first()
        except AssignmentsError as exc:
            self.log.error(f"{self.source.describe()}: {exc}")
            return 2
        if initial is None:
            return 0  # stopped before there was anything to run
        await self.stop_leftovers()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        loop.add_signal_handler(signal.SIGHUP, self.source.reload)
        self.log.info(
            f"running {len(initial.dynos)} dynos from {self.source.describe()}; "
            f"{svc.users.describe()}; launched by {svc.spawner.describe()}; "
            f"processes found by {svc.markers.describe()}; ports by {svc.listen.method}"
        )
        self._apply(initial)
        background = [
            asyncio.create_task(self._follow(), name="assignments"),
            asyncio.create_task(self._sample_memory(), name="memory"),
        ]
        try:
            await self._shutdown.wait()
            self._draining = True
            count = len(self.reconciler.dynos())
            self.log.info(f"draining: stopping {count} dynos")
            for task in background:
                try:
                    await cancel_and_wait(task)
                except Exception as exc:  # a bug; the dynos still get stopped below
                    self.log.error(f"{task.get_name()} had failed: {exc!r}")
            await self.source.aclose()  # no new assignments while draining
            await self.reconciler.drain("Stopping: the dyno manager is shutting down")
            self.log.info("all dynos stopped; exiting")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return 0

    async def _first(self) -> AssignmentSet | None:
        """The source's first set; None when SIGTERM/SIGINT came first (a feed may take a
        while when the control plane is away)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        first = asyncio.ensure_future(self.source.first())
        stop = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait([first, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if not first.done():
            try:
                await cancel_and_wait(first)
            except AssignmentsError:
                pass  # failed just as the stop came: stopping is what matters now
            self.log.info("stopped while waiting for the first assignments")
            return None
        return first.result()

    async def close(self) -> None:
        svc = self.services
        await self.source.aclose()
        if self.admin is not None:
            await self.admin.close()
        svc.listen.close()
        svc.spawner.close()
        if not self.reconciler.dynos():
            try:
                await svc.markers.close()
            except MarkerError as exc:
                svc.metrics.internal_errors.labels("marker").inc()
                self.log.error(str(exc))
        await svc.slugs.aclose()
        await svc.reporter.aclose()

    # Desired state.

    def _apply(self, update: AssignmentSet) -> None:
        for error in update.errors:
            kept = " (the dyno already running under that name is kept)" if error.key else ""
            self.log.error(f"{self.source.describe()}: {error}{kept}")
        self.services.metrics.reloads.labels("errors" if update.errors else "ok").inc()
        self.reconciler.apply(update.dynos, keep=update.rejected_keys)
        self._prune_slugs(update.dynos.values())

    def _prune_slugs(self, assigned: Iterable) -> None:
        keep = {a.slug.sha256 for a in assigned}
        keep.update(d.assignment.slug.sha256 for d in self.reconciler.dynos())
        try:
            self.services.slugs.prune(keep)
        except OSError as exc:
            self.services.metrics.internal_errors.labels("slug-cache").inc()
            self.log.error(f"cannot prune the slug cache {self.services.slugs.directory}: {exc}")

    async def _follow(self) -> None:
        while True:
            try:
                update = await self.source.next()
            except AssignmentsError as exc:
                self.services.metrics.reloads.labels("rejected").inc()
                running = len(self.reconciler.dynos())
                self.log.error(f"{self.source.describe()}: {exc}; keeping the {running} dynos already assigned")
                continue
            self.log.info(f"{self.source.describe()}: {len(update.dynos)} dynos assigned")
            self._apply(update)

    async def _sample_memory(self) -> None:
        sampler = MemorySampler()
        interval = self.services.config.memory_interval
        while True:
            await asyncio.sleep(interval)
            sessions: dict[int, Dyno] = {}
            for dyno in self.reconciler.dynos():
                if dyno.pid is not None:
                    sessions[dyno.pid] = dyno
            if not sessions:
                continue
            try:
                totals = await asyncio.to_thread(sampler.sample, sessions)
            except OSError as exc:
                self.services.metrics.internal_errors.labels("memory").inc()
                self.log.error(f"memory sampling failed: {exc}")
                continue
            for dyno, rss in totals.items():
                dyno.observe_memory(rss)

    # Recovery after a crash of a previous agent.

    async def stop_leftovers(self) -> None:
        """Stop every process a previous agent on this data dir left running, then clean up."""
        svc = self.services
        records = svc.data_dir.records()
        found = await svc.markers.leftovers()
        for instance, record in records.items():
            pid, ticks = record.get("pid"), record.get("start_ticks")
            if isinstance(pid, int) and procscan.is_alive(pid, ticks):
                found.setdefault(instance, set()).add(pid)
        alive = {inst: pids for inst, pids in found.items() if pids}
        if alive:
            for instance, pids in sorted(alive.items()):
                record = records.get(instance, {})
                what = f"{record.get('app', '?')} {record.get('dyno', '?')}" if record else f"instance {instance}"
                listed = ", ".join(str(p) for p in sorted(pids))
                self.log.info(f"stopping {what} left running by a previous dyno manager (pids {listed})")
            await self._terminate_all({pid for pids in alive.values() for pid in pids})
        for instance in set(found) | set(records):
            try:
                await svc.markers.release_leftover(instance)
            except MarkerError as exc:
                svc.metrics.internal_errors.labels("marker").inc()
                self.log.error(str(exc))
            svc.data_dir.remove_record(instance)
        for path, error in svc.data_dir.clear_dyno_dirs():
            svc.metrics.internal_errors.labels("cleanup").inc()
            self.log.error(f"cannot remove {path} left by a previous run: {error}")

    async def _terminate_all(self, pids: set[int]) -> None:
        starts = {pid: (procscan.read_stat(pid) or None) for pid in pids}
        live = {pid: s.start_ticks for pid, s in starts.items() if s is not None}
        for pid in live:
            _signal(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.services.config.stop_timeout
        pause = 0.01
        while live:
            live = {p: t for p, t in live.items() if procscan.is_alive(p, t)}
            if not live:
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
        self.log.info(f"Error R12 (Exit timeout): {len(live)} leftover processes ignored SIGTERM; sending SIGKILL")
        for pid in live:
            _signal(pid, signal.SIGKILL)
        deadline = loop.time() + 10.0  # SIGKILL cannot be refused; this bounds a stuck kernel
        while any(procscan.is_alive(p, t) for p, t in live.items()) and loop.time() < deadline:
            await asyncio.sleep(0.01)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # exited between the scan and the signal
