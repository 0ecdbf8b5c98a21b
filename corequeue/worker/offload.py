"""One call at a time in a thread of its own, collected later: the worker's database cycles.

While PostgreSQL records one batch of endings and claims the next, the worker's loop goes on
reading results from its children and handing them work (the driver releases the GIL while it
waits for the server). ``threaded=False`` runs each call at once in the caller's thread, with
the same interface (SQLite, where writers take turns anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from corequeue.worker.notifier import WakeUp


class Offload:
    def __init__(self, *, threaded: bool, name: str = "corequeue-db") -> None:
        self.threaded = threaded
        self.name = name
        #: Readable (for ``select``) once the running call has finished.
        self.done = WakeUp()
        self._cv = threading.Condition()
        self._call: Callable[[], Any] | None = None
        self._outcome: tuple[Any, BaseException | None] | None = None
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """Whether a call was started and its outcome not taken yet."""
        return self._busy

    def start(self, call: Callable[[], Any], *, inline: bool = False) -> bool:
        """Start ``call``; returns True when it already ran (``inline``, or not threaded):
        its outcome is ready to take. Inline saves the two thread hand-offs (a fraction of a
        millisecond) when the caller has nothing else to do meanwhile."""
        if self._busy:
            raise RuntimeError("Offload.start(): the previous call's outcome was not taken")
        self._busy = True
        if inline or not self.threaded:
            self._outcome = _outcome(call)
            self.done.set()
            return True
        with self._cv:
            if self._closed:
                raise RuntimeError("Offload.start() after close()")
            self._call = call
            self._cv.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        return False

    def take(self, timeout: float | None = 0.0) -> tuple[Any, BaseException | None] | None:
        """The finished call's outcome ``(value, exception)``, once; None while it still runs
        (waiting up to ``timeout`` seconds for it; None waits as long as it takes)."""
        if not self._busy:
            return None
        with self._cv:
            if self._outcome is None and timeout != 0.0:
                self._cv.wait_for(lambda: self._outcome is not None, timeout)
            outcome, self._outcome = self._outcome, None
        if outcome is None:
            return None
        self._busy = False
        self.done.clear()
        return outcome

    def close(self) -> None:
        """Stop the thread (after the running call, whose outcome is dropped if not taken)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.done.close()

    def _serve(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._call is not None or self._closed)
                if self._call is None:
                    return
                call, self._call = self._call, None
            outcome = _outcome(call)
            with self._cv:
                self._outcome = outcome
                self._cv.notify_all()
            self.done.set()


def _outcome(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except BaseException as exc:  # handed to the caller, who decides
        return None, exc
