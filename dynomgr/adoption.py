"""A dyno's hand-over between two agents: `detach()` leaves its process running, recorded for
the next agent (dynomgr/handover.py), and that agent's `Dyno(..., kept=...)` adopts it as its
first life, as if it had launched it: same pid, port, marker, FIFOs (dynomgr/outputfifo.py).

A part of `Dyno` (dynomgr/dyno.py), kept apart because it is the one place where a dyno's
process outlives its watcher; it uses the dyno's own steps (`_watch`, `_graceful_stop`, ...).
"""

from __future__ import annotations

import asyncio

from dynomgr.handover import KEEPABLE, KeptDyno
from dynomgr.life import Life, Outcome
from dynomgr.process import AdoptedProcess, WatchedProcess
from dynomgr.state import DynoState


class HandOver:
    """The hand-over steps of `Dyno` (which defines the state and steps used here)."""

    async def detach(self) -> bool:
        """Stop watching the dyno but leave its process running, recorded for the next agent
        (`--keep-dynos`); True when it was kept (a dyno not starting or up is not: it stops)."""
        if not self._stop_requested.is_set():
            self._detaching = True
            self._stop_reason = "Stopping: the dyno manager exits and this dyno was not running"
            self._stop_requested.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        return self._kept_record is not None

    async def _adopt(self, life: Life, kept: KeptDyno) -> Outcome:
        """Go on watching a dyno a previous agent left running, as if this agent had started it."""
        svc = self.services
        life.directory, life.outputs = kept.directory, tuple(path for path, _ in kept.outputs)
        life.marker = svc.markers.adopt(kept.marker, kept.cgroup)
        life.start_ticks = kept.start_ticks
        # Ours from here: a failure below still tears this life down, processes first.
        life.process = process = AdoptedProcess.watch(kept.pid, kept.start_ticks, self._on_output)
        # Daily cycling and the restart policy's "healthy after" count from the real launch.
        life.launched = svc.clock() - max(0.0, svc.wallclock() - kept.launched_at)
        self._policy.started(at=life.launched)
        if kept.port is not None:
            life.port = kept.port
            svc.ports.reserve(life.port)
            if self.state is DynoState.STARTING:
                life.listening = svc.listen.watch(life.port)
                life.listening.add_done_callback(lambda future: self._port_listening(life, future))
        # The hand-over is done with: from now on this is our launch, and if we crash the next
        # agent stops it (design.md) rather than adopting it again from a stale record.
        self._write_record(life)
        if process.exited.done():
            self._say(f"Process {kept.pid} ended while no dyno manager watched it")
            return await self._watch(life, process)
        try:
            await process.read_outputs(kept.outputs, svc.config.max_line_bytes)
        except OSError as exc:
            # Without a reader its output would fill the FIFO and then block it for good while
            # it is reported up: start it afresh instead.
            svc.metrics.internal_errors.labels("handover").inc()
            self._say(f"Error: cannot read the output of pid {kept.pid} ({exc.filename}: "
                      f"{exc.strerror}); restarting it")
            await self._graceful_stop(life, process, "Restarting: its output cannot be read")
            return Outcome.CYCLED
        svc.metrics.adopted.inc()
        self._say(f"Adopted by a new dyno manager (pid {kept.pid}, still {self.state})")
        return await self._watch(life, process)

    async def _stop_or_detach(self, life: Life, process: WatchedProcess) -> Outcome:
        # A one-off dyno is not handed over: its session (or its output tail) is this agent's.
        if (not self._detaching or self.is_one_off or process.exited.done()
                or self.state not in KEEPABLE
                or life.start_ticks is None or life.marker is None or life.outputs is None):
            return await self._graceful_stop(life, process, self._stop_reason)
        # Recorded before letting go (no await in between, so no output is read meanwhile): a
        # dyno whose record cannot be written is stopped, not left running unknown to anyone.
        record = self._kept_dyno(life, process, process.held())
        try:
            self.services.data_dir.write_record(record.record_id, record.to_record())
        except OSError as exc:
            self.services.metrics.internal_errors.labels("record").inc()
            self._say(f"Error: cannot record this dyno for the next dyno manager: {exc.strerror}")
            return await self._graceful_stop(life, process, self._stop_reason)
        process.detach()
        life.kept = True
        self._kept_record = record
        return Outcome.DETACHED

    def _kept_dyno(self, life: Life, process: WatchedProcess, tails: tuple[bytes, ...]) -> KeptDyno:
        return KeptDyno(
            assignment=self.assignment, instance=self.ref.instance, life=life.number,
            pid=process.pid, start_ticks=life.start_ticks, marker=life.marker.value,
            cgroup=life.marker.cgroup, port=life.port, address=self.address, state=self.state,
            since=self.since, restarts=self.restarts, crashes=self._policy.crashes,
            launched_at=self.services.wallclock() - (self.services.clock() - life.launched),
            directory=life.directory, outputs=tuple(zip(life.outputs, tails)),
            unhealthy=self.unhealthy,
        )  # fmt: skip
