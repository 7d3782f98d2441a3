"""What the machine a benchmark runs on can do, measured in the same run, so that figures from different machines
can be compared.

The work around the model is CPU-bound Python: regular expressions over short texts, dicts, sets and string
operations. How fast a machine runs that work differs a lot between machines of the same kind. Two sessions'
"2-core" machines ran the same guardrails code 1.5x apart. Two virtual CPUs that share a physical core also give
two processes far less than 2x. :func:`machine` times a fixed workload of that kind, and the figures go into the
benchmarks' JSON:

- ``python_ms``: the workload, in one process, best of three. A run whose ``python_ms`` is 1.5x another's ran on
  a machine 1.5x slower for this work.
- ``pair_speedup``: the same workload run by two processes at once, against one. This is the most that two
  processes (two workers, two checking processes) can gain over one on this machine; 2.0 is two free cores.

  python scripts/bench_machine.py
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from typing import Any

_WORDS = re.compile(r"[a-z0-9']+")
_PRICE = re.compile(r"(?:US\$|\$|€|£)\s?(\d+(?:[.,]\d{2})?)")
# some megabytes of text, as a chunk's copy and contexts are: two processes on cores that share a cache slow each
# other down on such work, where a loop over a few objects shows nothing
_TEXTS = [f"Save {k % 40 + 5}% on the Item {k} Series {k % 7} kit: now ${k % 300 + 9}.{k % 100:02d}, was "
          f"${k % 300 + 19}.99. Tap to see the {k % 11 + 2}-piece set." for k in range(20_000)]


def workload(rounds: int = 2) -> float:
    """Seconds (wall) of a fixed CPU-bound workload: each text's words counted and its prices read, ``rounds``
    times."""
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    prices: set[str] = set()
    for _ in range(rounds):
        for text in _TEXTS:
            for word in _WORDS.findall(text.lower()):
                counts[word] = counts.get(word, 0) + 1
            prices.update(_PRICE.findall(text))
    assert counts and prices
    return time.perf_counter() - t0


def _pair() -> float:
    """Two processes' throughput at once over one's: the workload here and in a forked child, at the same time
    (:func:`~generator.core.forked.forked_map`, as the runner checks in forked processes), against the workload
    alone just before."""
    from generator.core.forked import forked_map

    solo = min(workload() for _ in range(2))
    return 2 * solo / max(forked_map(lambda _: workload(), [0, 1], 2, min_items=1))


def cpu_model() -> str:
    """The CPU's model name (Linux), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(pair: bool = True) -> dict[str, Any]:
    """The machine's CPU, its cores and load, ``python_ms`` and (with ``pair``, where ``os.fork`` exists)
    ``pair_speedup``, the median of three pairs."""
    out: dict[str, Any] = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
                           "python_ms": round(1000 * min(workload() for _ in range(3)), 1)}
    if pair and hasattr(os, "fork"):
        out["pair_speedup"] = round(statistics.median(_pair() for _ in range(3)), 2)
    return out


def describe(m: dict[str, Any]) -> str:
    """One line for a benchmark's output."""
    pair = f", two processes at once {m['pair_speedup']:.2f}x one" if "pair_speedup" in m else ""
    return f"machine: {m['cpu_model']}, {m['cores']} cores, reference workload {m['python_ms']:.0f} ms{pair}"


if __name__ == "__main__":
    print(describe(machine()))
