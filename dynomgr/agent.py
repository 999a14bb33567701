"""The dyno manager agent: one event loop running every dyno of this VM.

It adopts the dynos a predecessor handed over (`--keep-dynos`) and stops whatever a crashed
predecessor left, takes full desired sets from its source and hands them to the reconciler,
samples memory for all dynos in one /proc pass, serves the admin endpoints, and exits in one of
two ways, kept apart:

* drain (SIGTERM, SIGINT): every dyno is stopped (SIGTERM, grace period, SIGKILL);
* hand over (SIGUSR2, or SIGTERM with `--keep-dynos`): every running dyno is left running and
  recorded for the next agent on this data dir (dynomgr/handover.py), which adopts it.

Either way the agent exits 0. SIGHUP asks the source for a fresh read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Iterable

from dynomesh import logline
from dynomesh.ready import Readiness
from dynomesh.poll import poll_until
from dynomesh.tasks import cancel_and_wait

from dynomgr import handover, procscan
from dynomgr.admin import AdminServer
from dynomgr.assignments import AssignmentSet, AssignmentsError
from dynomgr.dyno import Dyno
from dynomgr.handover import HandoverError, KeptDyno
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
        self._keep_dynos = False  # how the agent exits: hand its dynos over, or stop them
        self._draining = False
        self._memory: asyncio.Task[None] | None = None
        services.metrics.watch_dynos(self.reconciler.dynos)

    @property
    def draining(self) -> bool:
        return self._draining

    def request_shutdown(self, keep_dynos: bool = False) -> None:
        """Exit: stopping every dyno, or (`keep_dynos`) leaving them to the next agent. The
        first request decides; later ones change nothing."""
        if not self._shutdown.is_set():
            self._keep_dynos = keep_dynos
            self._shutdown.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit status."""
        try:
            return await self._run()
        finally:
            await self.close()

    async def _run(self) -> int:
        # Signals are heard from the start: taking over may take the whole stop timeout (a
        # leftover ignoring SIGTERM), and a stop meanwhile must end the agent in order, not kill it.
        loop = asyncio.get_running_loop()
        keep_on_term = self.services.config.keep_dynos
        loop.add_signal_handler(signal.SIGTERM, self.request_shutdown, keep_on_term)
        loop.add_signal_handler(signal.SIGINT, self.request_shutdown, False)
        loop.add_signal_handler(signal.SIGUSR2, self.request_shutdown, True)
        try:
            return await self._start_and_serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _start_and_serve(self) -> int:
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
        await self.take_over()
        # Adopted dynos are held to their quotas (R14, R15) from now on, even while the first
        # assignments are awaited (the control plane may be away for long).
        self._memory = asyncio.create_task(self._sample_memory(), name="memory")
        if self._shutdown.is_set():  # a stop came while taking over
            await self._exit(self._keep_dynos)
            return 0
        return await self._serve()

    async def _serve(self) -> int:
        svc = self.services
        try:
            initial = await self._first()
        except AssignmentsError as exc:
            self.log.error(f"{self.source.describe()}: {exc}")
            # Adopted dynos run on for a fixed agent; unread meanwhile, their output fills its
            # FIFO (up to 1 MiB, dynomgr/outputfifo.py) and then their next write waits.
            await self._exit(keep_dynos=True)
            return 2
        if initial is None:
            await self._exit(self._keep_dynos)
            return 0  # stopped before there was anything to run
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.source.reload)
        self.log.info(
            f"running {len(initial.dynos)} dynos from {self.source.describe()}; "
            f"{svc.users.describe()}; launched by {svc.spawner.describe()}; "
            f"processes found by {svc.markers.describe()}; ports by {svc.listen.method}"
        )
        self._apply(initial)
        follow = asyncio.create_task(self._follow(), name="assignments")
        await self._shutdown.wait()
        await self._end_task(follow)
        await self._exit(self._keep_dynos)
        return 0

    async def _end_task(self, task: asyncio.Task[None]) -> None:
        try:
            await cancel_and_wait(task)
        except Exception as exc:  # a bug; the dynos are still stopped or handed over
            self.log.error(f"{task.get_name()} had failed: {exc!r}")

    async def _exit(self, keep_dynos: bool) -> None:
        """Stop every dyno, or hand the running ones over to the next agent."""
        self._draining = True
        if self._memory is not None:
            await self._end_task(self._memory)  # no R15 kills while dynos stop or are handed over
        await self.source.aclose()  # no new assignments from here on
        count = len(self.reconciler.dynos())
        if not keep_dynos:
            self.log.info(f"draining: stopping {count} dynos")
            await self.reconciler.drain("Stopping: the dyno manager is shutting down")
            self.log.info("all dynos stopped; exiting")
            return
        kept = await self.reconciler.detach_all()
        if count:
            self.log.info(f"exiting; {kept} of {count} dynos left running for the next dyno "
                          f"manager on {self.services.data_dir.root} (the others stopped)")

    async def _first(self) -> AssignmentSet | None:
        """The source's first set; None when a stop came first (a feed may take a while when
        the control plane is away; adopted dynos run, and are watched, meanwhile)."""
        first = asyncio.ensure_future(self.source.first())
        stop = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait([first, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
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

    # Taking over from a previous agent.

    async def take_over(self) -> None:
        """Adopt the dynos a previous agent handed over; stop what else it left, clean up."""
        svc = self.services
        records = svc.data_dir.records()
        kept: dict[str, KeptDyno] = {}
        for record_id, record in sorted(records.items()):
            if not handover.is_kept(record):
                continue
            try:
                dyno = handover.parse_kept(record, svc.slugs.schemes)
                if dyno.record_id != record_id:
                    raise HandoverError(f"it names dyno life {dyno.record_id}")
                if any(k.assignment.key == dyno.assignment.key for k in kept.values()):
                    raise HandoverError(f"{dyno.assignment.describe()} is kept twice")
            except HandoverError as exc:
                svc.metrics.internal_errors.labels("handover").inc()
                self.log.error(f"cannot adopt the dyno of {svc.data_dir.run}/{record_id}.json: "
                               f"{exc}; stopping its processes instead")
                continue
            kept[record_id] = dyno
        # Leftovers first: their clean-up must not meet files of an adopted dyno's next life.
        await self.stop_leftovers({k: v for k, v in records.items() if k not in kept}, kept)
        for dyno in kept.values():
            self.reconciler.adopt(Dyno(dyno.assignment, svc, dyno))
        if kept:
            self.log.info(f"adopting {len(kept)} dynos left running by the previous dyno manager")

    async def stop_leftovers(self, records: dict[str, dict], kept: dict[str, KeptDyno]) -> None:
        """Stop every process a previous agent on this data dir left running (but the kept
        dynos'), then clean up what they used."""
        svc = self.services
        svc.interrupted_one_offs.update(record["one_off"] for record in records.values()
                                        if isinstance(record.get("one_off"), str))
        found = {i: pids for i, pids in (await svc.markers.leftovers()).items() if i not in kept}
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
        svc.data_dir.clear_outputs(frozenset(kept))
        for path, error in svc.data_dir.clear_dyno_dirs(frozenset(k.directory for k in kept.values())):
            svc.metrics.internal_errors.labels("cleanup").inc()
            self.log.error(f"cannot remove {path} left by a previous run: {error}")

    async def _terminate_all(self, pids: set[int]) -> None:
        starts = {pid: (procscan.read_stat(pid) or None) for pid in pids}
        live = {pid: s.start_ticks for pid, s in starts.items() if s is not None}
        for pid in live:
            _signal(pid, signal.SIGTERM)

        def all_gone() -> bool:
            nonlocal live
            live = {p: t for p, t in live.items() if procscan.is_alive(p, t)}
            return not live

        if await poll_until(all_gone, self.services.config.stop_timeout):
            return
        self.log.info(f"Error R12 (Exit timeout): {len(live)} leftover processes ignored SIGTERM; sending SIGKILL")
        for pid in live:
            _signal(pid, signal.SIGKILL)
        await poll_until(all_gone, 10.0)  # SIGKILL cannot be refused; this bounds a stuck kernel


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # exited between the scan and the signal
