"""scripts/bench_machine.py: the machine figures every benchmark's JSON carries."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("bench_machine", ROOT / "scripts" / "bench_machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_machine_times_the_workload_alone_and_in_two_processes():
    m = _module().machine()
    assert m["cores"] == os.cpu_count() and m["cpu_model"]
    assert 1 < m["python_ms"] < 60_000
    # two processes at once: more than none of one's throughput, at most two cores' (a little over for noise)
    assert 0.2 < m["pair_speedup"] < 2.3


def test_command_prints_one_line_with_the_figures():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_machine.py")], capture_output=True,
                         text=True, check=True).stdout
    assert re.fullmatch(r"machine: .+, \d+ cores, reference workload \d+ ms, two processes at once \d\.\d\dx one\n",
                        out)
