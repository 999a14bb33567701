"""Building (and letting go of) a large routing table without holding the router's loop.

A snapshot of 100 000 apps and a million host names takes seconds of Python to decode, parse
and build, and freeing the table it replaces takes over 100 ms. The router is one thread, so
any of that done in one go is a pause for every request. Here the work is a generator of small
steps (one entry each), run in slices of `SLICE_SECONDS` with `await asyncio.sleep(0)` between
them: requests are served between slices, and keep using the old table until the caller swaps
the finished one in with one reference (`Router.install`). After the swap the apps' backends
are reconciled (`reconcile`) and the replaced table is emptied (`retire`), in slices too. A
worker thread would not bound the pause: it hands the GIL back only every 5 ms at best, and
not at all inside one long C call.

Garbage collection: a table of a million hosts holds about half a million objects the
collector tracks (entries, dynos), and one full collection over them takes a few hundred
milliseconds. So while a table is built, automatic full collections are paused (young ones run
as usual: they only walk what is new), and once it is built everything alive is frozen
(`gc.freeze`): neither that table nor the one it replaces is ever walked again, and both are
still freed by reference counting when they go. The cost: a reference cycle that is alive at
that moment and becomes garbage later is never collected, e.g. a client connection open during
the freeze (each holds about 16 objects in cycles). The first table is built before any
connection, so this applies to snapshots taken while serving (a resync), once each. Entries a
delta adds are ordinary objects; after as many deltas as the table has apps, full collections
walk about as much as they would have walked the whole table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from router.routes import AppRoute
from router.table import RouteTable, TableBuilder

if TYPE_CHECKING:
    from router.server import Router

# The longest a slice holds the loop (plus one step: parsing one entry, well under 1 ms).
# Small against the 50 ms a request may wait behind table work; large enough that switching
# costs nothing (a slice does hundreds of entries).
SLICE_SECONDS = 0.005


async def run_in_slices(steps: Iterator, *, budget: float | None = None,
                        clock: Callable[[], float] = time.perf_counter) -> int:
    """Run `steps` to its end, yielding to the loop every `budget` seconds (default
    `SLICE_SECONDS`). -> the number of slices run."""
    if budget is None:
        budget = SLICE_SECONDS
    slices = 1
    deadline = clock() + budget
    for boundary in steps:  # a step may yield True: "end the slice before my next part"
        if boundary or clock() >= deadline:
            await asyncio.sleep(0)
            slices += 1
            deadline = clock() + budget
    return slices


class _FullCollectionPause:
    """Pauses may nest or overlap (a reload cancelled by a newer one): the threshold is
    restored when the last one ends. Process-wide, as the collector is."""

    def __init__(self) -> None:
        self.depth = 0
        self.saved = 0

    @contextlib.contextmanager
    def __call__(self):
        young, middle, old = gc.get_threshold()
        if self.depth == 0:
            self.saved = old
            gc.set_threshold(young, middle, 1 << 30)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, self.saved)


# No automatic full collection inside (each would walk the table being built).
full_collections_paused = _FullCollectionPause()


def keep_out_of_collections() -> None:
    """Collect the young generations (cheap: recent objects only), then freeze what is alive,
    so a full collection never walks the routing table (see the module docstring)."""
    gc.collect(1)
    gc.freeze()


def build_steps(builder: TableBuilder, routes: Iterable[AppRoute]) -> Iterator[bool]:
    """One step per entry; True first when the entry will make the exact-host dict grow.

    CPython grows a dict by rehashing all of it in one call, whenever its usable slots (2/3 of
    a power of two) run out: 40 ms at 700 000 hosts on a small VM, the longest single step of a
    build. Such a step starts a slice of its own instead of ending a full one."""
    size = 8  # CPython's smallest dict; then it doubles
    for route in routes:
        after = builder.exact_hosts + len(route.hosts)
        if after > size * 2 // 3:
            while after > size * 2 // 3:
                size *= 2
            yield True
        builder.add(route)
        yield False


async def build(routes: list[AppRoute], revision: int, previous: RouteTable | None = None, *,
                budget: float | None = None) -> RouteTable:
    """A new table from whole entries, built in slices, then frozen out of collections (see
    the module docstring); raises like `RouteTable.build`. `routes` is emptied as it is
    used, so that each entry's only reference is the table's."""
    builder = TableBuilder(revision, previous)
    with full_collections_paused():
        await run_in_slices(build_steps(builder, _releasing(routes)), budget=budget)
        table = builder.table()
        keep_out_of_collections()
    return table


def _releasing(items: list) -> Iterator:
    for index in range(len(items)):
        item, items[index] = items[index], None
        yield item
    items.clear()


def retire_steps(table: RouteTable) -> Iterator[None]:
    """Empty a table that was replaced, a few hundred entries per step."""
    for mapping in (table._exact, table._wildcard, table._apps):
        popitem = mapping.popitem
        while mapping:
            for _ in range(min(256, len(mapping))):
                popitem()
            yield


async def retire(table: RouteTable, *, budget: float | None = None) -> None:
    """Free a replaced table in slices instead of in one pause when its last reference goes.
    The table is left empty; nothing may still be routing on it."""
    await run_in_slices(retire_steps(table), budget=budget)


def reconcile_steps(router: Router) -> Iterator[None]:
    """After a snapshot's swap: each app with a backend whose entry is not the table's (changed
    or gone) reconciled, one step each. Rebinding 100 000 backends at once would hold the loop
    for a second or more; an entry the snapshot kept unchanged is the same object, and costs
    only the check."""
    table = router.table
    bound = router.backends.bound
    names = list(bound)
    for start in range(0, len(names), 1024):
        stale = [name for name in names[start:start + 1024]
                 if (backend := bound.get(name)) is not None
                 and backend.route is not table.app(name)]
        yield
        for name in stale:
            router.reconcile((name,))
            yield


async def reconcile(router: Router, *, budget: float | None = None) -> None:
    """After a snapshot's table is swapped in: reconcile the apps' backends in slices."""
    await run_in_slices(reconcile_steps(router), budget=budget)
