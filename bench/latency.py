"""A row of latencies for a bench table: count, p50, p90 and the slowest, in milliseconds."""

from __future__ import annotations

import math
import statistics


def summary(op: str, latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {"op": op, "count": len(ordered),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            # Nearest rank, ceil(0.9 n): never below the median, even with a handful of samples.
            "p90_ms": round(ordered[max(0, math.ceil(len(ordered) * 0.9) - 1)] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}
