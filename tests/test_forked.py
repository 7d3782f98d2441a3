"""forked_map: the same answers as a plain loop, in forked processes, and no process left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.core.forked import ChildFailed, forked_map


def _children() -> list[int]:
    """This process's children, zombies (not reaped) included."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == os.getpid():
            out.append(int(stat.parent.name))
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-1000, 1000), max_size=40), st.integers(1, 4), st.integers(1, 8))
def test_results_are_the_plain_loops_in_order(items: list[int], processes: int, min_items: int) -> None:
    assert forked_map(lambda x: (x, x * x), items, processes, min_items=min_items) == [(x, x * x) for x in items]


def test_slices_run_in_forked_processes_and_their_side_effects_stay_there() -> None:
    seen: list[int] = []

    def work(x: int) -> int:
        seen.append(x)
        return os.getpid()

    pids = forked_map(work, list(range(12)), 3, min_items=4)
    assert pids[:4] == [os.getpid()] * 4
    assert len(set(pids)) == 3 and len(set(pids[4:8])) == 1 and len(set(pids[8:])) == 1
    assert seen == [0, 1, 2, 3]  # only the caller's own slice appended here
    assert not _children()


def test_too_few_items_for_a_second_process_stay_in_this_one() -> None:
    assert set(forked_map(lambda _: os.getpid(), list(range(127)), 4)) == {os.getpid()}  # 64 items each at least
    assert len(set(forked_map(lambda _: os.getpid(), list(range(128)), 4))) == 2


def test_an_error_in_a_child_is_raised_with_its_traceback() -> None:
    with pytest.raises(ChildFailed, match="ZeroDivisionError"):
        forked_map(lambda x: 1 // (x - 9), list(range(10)), 2, min_items=2)
    assert not _children()


def test_an_error_here_leaves_no_child_behind() -> None:
    with pytest.raises(ZeroDivisionError):
        forked_map(lambda x: "x" * 200_000 if x else 1 // x, list(range(10)), 3, min_items=2)  # children block
    assert not _children()


def test_a_child_that_dies_has_its_slice_done_here(caplog: pytest.LogCaptureFixture) -> None:
    parent = os.getpid()

    def work(x: int) -> int:
        if x == 7 and os.getpid() != parent:
            os._exit(3)  # killed, out of memory...
        return x * 10

    assert forked_map(work, list(range(10)), 2, min_items=2) == [x * 10 for x in range(10)]
    assert "exit status 3" in caplog.text and "its 5 items run here" in caplog.text
    assert not _children()


def test_a_child_ends_on_a_stop_signal_instead_of_running_the_callers_handler(caplog: pytest.LogCaptureFixture) -> None:
    import signal

    parent = os.getpid()

    def shutdown(*_: object) -> None:  # as a worker's warm shutdown: it must not run in a child
        raise SystemExit("the caller's handler ran")

    def work(x: int) -> int:
        if x == 8 and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
        return x + 1

    before = signal.signal(signal.SIGTERM, shutdown)
    try:
        assert forked_map(work, list(range(10)), 2, min_items=2) == [x + 1 for x in range(10)]
    finally:
        signal.signal(signal.SIGTERM, before)
    assert f"exit status {-signal.SIGTERM}" in caplog.text
    assert not _children()
