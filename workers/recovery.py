"""The recovery pass in a thread of its own, every ``PUSHGEN_RECOVER_EVERY`` seconds: run by every Celery worker
and by ``pushgen serve``, so a chunk whose task was lost (a broker restart, a killed worker, a server killed in the
middle of an in-process job) and a scheduled job that is due are sent (again) without anyone running
``pushgen job recover``."""

from __future__ import annotations

import logging
import threading

from generator import jobs
from generator.core.config import get_settings
from generator.db.store import Store
from generator.jobs import Enqueue

log = logging.getLogger(__name__)


class RecoveryLoop:
    """A daemon thread running :func:`generator.jobs.recover` every ``every`` seconds (first pass at once when
    ``at_start``) on connections of its own, until :meth:`stop`."""

    def __init__(self, enqueue: Enqueue, every: float | None = None, *, at_start: bool = False):
        self.enqueue = enqueue
        self.every = get_settings().recover_every if every is None else every
        self.at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RecoveryLoop:
        if self.every > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pushgen-recover", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        own: Store | None = None  # never shared with request or task threads
        if self.at_start:
            own = self._pass(own)
        while not self._stop.wait(self.every):
            own = self._pass(own)

    def _pass(self, own: Store | None) -> Store | None:
        try:
            own = own or Store(get_settings().database_url, migrate=False)
            jobs.recover(own, enqueue=self.enqueue)
        except Exception:  # noqa: BLE001 - the broker or database is away; the next pass tries again
            log.warning("recovery pass failed", exc_info=True)
        return own
