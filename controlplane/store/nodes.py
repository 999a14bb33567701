"""Control nodes: which one schedules (the leader epoch) and how far each one's route-feed
followers got (`control_nodes`).

Leadership is fenced here: the node that wins the leader lock bumps `scheduler_leader.epoch`,
and every scheduling pass first checks that the epoch is still its own (`check_epoch`). All
writers take the revision row lock first, so a deposed leader's next pass is serialised after
the new leader's claim, sees the new epoch and stops before it writes anything.

Control nodes sharing a PostgreSQL database publish how far their route-feed followers got,
so the leader knows when every router has a dyno out of its table.
"""

from __future__ import annotations

from controlplane.store import errors
from controlplane.store.database import Database, Transaction
from controlplane.store.models import Leader, NodeProgress

# NOTIFY channel on which a node says its route followers got further (wakes the leader).
PROGRESS_CHANNEL = "dynomesh_progress"


async def check_epoch(tx: Transaction, epoch: int) -> None:
    """NotLeader unless `epoch` is still the scheduler's (call it under the revision lock)."""
    current = int(await tx.fetchval("SELECT epoch FROM scheduler_leader WHERE id = 1"))
    if current != epoch:
        raise errors.NotLeader(f"scheduler epoch is {current}, this node holds {epoch}")


async def other_nodes(tx: Transaction, node_id: str) -> list[NodeProgress]:
    """Every control node's published progress but `node_id`'s."""
    rows = await tx.fetch("SELECT * FROM control_nodes WHERE id <> $1 ORDER BY id", node_id)
    return [NodeProgress(r["id"], float(r["seen_at"]), int(r["route_followers"]),
                         int(r["route_revision"])) for r in rows]


class NodeStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_leadership(self, node_id: str, now: float) -> int:
        """Record `node_id` as the scheduler; return its epoch (the fence for its passes).

        The previous leader's row goes: its database session ended (that is how the lock came
        free), so its route followers have moved to other nodes or cannot be sent anything
        new by it; counted until the row expired, they held every take-out to its timeout.
        A previous leader that is still alive publishes its row again at its next beat."""
        async with self._db.write() as tx:
            await tx.execute(
                "DELETE FROM control_nodes WHERE id <> $1 AND id = "
                "(SELECT node FROM scheduler_leader WHERE id = 1)", node_id)
            return int(await tx.fetchval(
                "UPDATE scheduler_leader SET epoch = epoch + 1, node = $1, since = $2 "
                "WHERE id = 1 RETURNING epoch", node_id, now))

    async def others(self, node_id: str) -> list[NodeProgress]:
        """Every other control node's published progress (its routers' revision)."""
        async with self._db.read() as tx:
            return await other_nodes(tx, node_id)

    async def leader(self) -> Leader:
        async with self._db.read() as tx:
            row = await tx.fetchrow("SELECT node, since FROM scheduler_leader WHERE id = 1")
        return Leader(row["node"], None if row["since"] is None else float(row["since"]))

    async def publish(self, node: NodeProgress, *, started_at: float) -> None:
        """Insert or refresh this node's row; other nodes hear of it on `PROGRESS_CHANNEL`."""
        async with self._db.write() as tx:
            changed = await tx.execute(
                "UPDATE control_nodes SET seen_at = $1, route_followers = $2, "
                "route_revision = $3 WHERE id = $4", node.seen_at, node.route_followers,
                node.route_revision, node.id)
            if not changed:
                await tx.execute(
                    "INSERT INTO control_nodes (id, started_at, seen_at, route_followers, "
                    "route_revision) VALUES ($1, $2, $3, $4, $5)", node.id, started_at,
                    node.seen_at, node.route_followers, node.route_revision)
            await tx.notify(PROGRESS_CHANNEL, node.id)

    async def seen_since(self, when: float) -> set[str]:
        """The control nodes that published progress at or after `when` (Unix seconds)."""
        async with self._db.read() as tx:
            rows = await tx.fetch("SELECT id FROM control_nodes WHERE seen_at >= $1", when)
        return {row["id"] for row in rows}

    async def forget(self, node_id: str) -> None:
        async with self._db.write() as tx:
            await tx.execute("DELETE FROM control_nodes WHERE id = $1", node_id)
