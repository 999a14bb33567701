"""App log streams: lines in (`POST /logs`), kept in the store, out to `dynomesh logs` tails.

    service = LogService(store)          # one per control node
    await service.start()                # LISTEN for other nodes' lines (PostgreSQL)
    ... service.ingest.submit(lines) ... service.hub.add(tail) ...

`lines.py` the wire shape and filters (no I/O), `ingest.py` group commit, `hub.py` fan-out to
this node's tails, `tail.py` one tail's bounded share. Storage is `store.logs` (store/logs.py).
"""

from __future__ import annotations

import asyncio
import contextlib

from controlplane.logs.hub import LogHub
from controlplane.logs.ingest import LogIngest
from controlplane.store import Store
from controlplane.store.logs import NOTIFY_CHANNEL

__all__ = ["LogService"]

# With several control nodes, tailed apps are re-read this often in case a NOTIFY was lost
# (the LISTEN connection dropped); lines of other nodes are otherwise handed out at once.
RESYNC_SECONDS = 5.0


class LogService:
    def __init__(self, store: Store, *, max_pending: int = 100_000) -> None:
        self._db = store.db
        self.hub = LogHub(store.logs, resync=RESYNC_SECONDS if store.db.shared else None)
        self.ingest = LogIngest(store.logs, self.hub.stored, max_pending=max_pending)

    async def start(self) -> None:
        if self._db.shared:
            await self._db.subscribe(NOTIFY_CHANNEL, self.hub.notified)

    def runners(self) -> dict:
        """The node's tasks for logs: the writer and the catch-up reader."""
        return {"log-ingest": self.ingest.run(), "log-hub": self.hub.run()}

    def close_tails(self) -> None:
        self.hub.close()

    async def flush(self, timeout: float) -> bool:
        """Wait (up to `timeout`) until the lines queued so far are stored; False if not."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.ingest.flushed()
                return True
        return False
