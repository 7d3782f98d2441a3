"""Map a function over items in forked processes that share the caller's memory (copy on write).

The campaign runner's checks are per user and independent, and read large shared state (the shop, each user's
guard context, the checks' indexes): forking gives each process that state for free, where a pool would pickle it
to every worker. :func:`forked_map` forks ``processes - 1`` children for one call, the caller works through the
first slice itself, and each child sends its slice's results back through a pipe (pickled) and exits.

Forking is chosen per call, not per worker start: a Celery prefork child is a daemon process, which
:mod:`multiprocessing` refuses to give children, and a worker that holds a CUDA context must not use it in a forked
child (the children here only run the function, which must not touch the GPU). A child that dies (killed, out of
memory) costs nothing but time: the caller works through its slice itself.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class ChildFailed(RuntimeError):
    """The function raised in a child process (the message carries the child's traceback)."""


def forked_map(fn: Callable[[T], R], items: Sequence[T], processes: int, *, min_items: int = 64) -> list[R]:
    """``[fn(x) for x in items]``, in up to ``processes`` processes (the caller and forked children), each taking a
    contiguous slice of at least ``min_items`` items. In order; an exception in ``fn`` is raised here (in a
    child: as :class:`ChildFailed`). ``fn``'s side effects in a child stay there: only return values come back.
    Where ``os.fork`` is missing (Windows) or one process is enough, it is a plain loop."""
    n = min(processes, len(items) // max(min_items, 1))
    if n <= 1 or not hasattr(os, "fork"):
        return [fn(x) for x in items]
    log.info("%d items in %d processes", len(items), n)
    bounds = [len(items) * k // n for k in range(n + 1)]
    children: list[tuple[int, int]] = []
    try:
        for k in range(1, n):
            children.append(_fork(fn, items[bounds[k]:bounds[k + 1]], [fd for _, fd in children]))
        out = [fn(x) for x in items[:bounds[1]]]
        for k in range(1, n):
            child, children[k - 1] = children[k - 1], (0, -1)  # _collect closes its pipe and reaps it
            out.extend(_collect(fn, items[bounds[k]:bounds[k + 1]], *child))
        return out
    finally:  # raised before every child was collected: close their pipes (they stop writing) and reap them
        for pid, read_fd in children:
            if pid:
                os.close(read_fd)
                os.waitpid(pid, 0)


def _fork(fn: Callable[[T], R], part: Sequence[T], others: Sequence[int]) -> tuple[int, int]:
    """A child working through ``part``; its pid and the pipe its results come through. The child closes
    ``others`` (the earlier children's pipes: held open here, a pipe closed by the caller would never break)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, read_fd
    status = 0
    try:  # the child: nothing of the caller's runs here (no atexit hooks, no buffered output flushed twice)
        for sig in (signal.SIGTERM, signal.SIGINT):  # not the worker's handlers (a warm shutdown, run here):
            signal.signal(sig, signal.SIG_DFL)  # stopped, a child just ends and the caller does its slice
        for fd in (read_fd, *others):
            os.close(fd)
        try:
            data = pickle.dumps((True, [fn(x) for x in part]), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # noqa: BLE001 - the caller raises it
            data = pickle.dumps((False, traceback.format_exc()))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    except BaseException:  # noqa: BLE001 - the caller sees the pipe end early and does the slice itself
        status = 1
    finally:
        os._exit(status)


def _collect(fn: Callable[[T], R], part: Sequence[T], pid: int, read_fd: int) -> list[R]:
    """A child's results; the slice worked through here if the child gave none."""
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    try:
        ok, value = pickle.loads(data)
    except Exception:  # noqa: BLE001 - nothing (or a part) came: the child died
        log.warning("a forked process (exit status %d) gave no results; its %d items run here",
                    os.waitstatus_to_exitcode(status), len(part))
        return [fn(x) for x in part]
    if not ok:
        raise ChildFailed(value)
    return value
