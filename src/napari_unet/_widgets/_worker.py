"""One background job per widget: a generator run in a napari ``thread_worker``, events routed to the GUI thread.

The generator never raises into Qt: an exception becomes a ``Failed`` event, which the widget shows as a
notification (no traceback dialog). Every run has a number; once a run is quit or replaced, its late
events are dropped, so Stop/Cancel take effect in the UI at once even if the thread needs a moment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("napari_unet")


@dataclass(frozen=True)
class Failed:
    """The job raised ``error``; carried as an event so the GUI thread decides how to show it."""

    error: BaseException


def _shielded(func: Callable[..., Generator], args: tuple, kwargs: dict) -> Generator:
    try:
        result = yield from func(*args, **kwargs)
    except Exception as e:
        if not _is_input_error(e):
            log.exception("napari-unet: background job %s failed", getattr(func, "__name__", func))
        yield Failed(e)
        return None
    return result


def _is_input_error(e: BaseException) -> bool:
    from ..errors import InputError

    return isinstance(e, InputError)


class WorkerRunner:
    """Runs one generator job at a time and forwards its events to GUI-thread callbacks."""

    def __init__(self) -> None:
        self.worker = None
        self._run = 0
        self._active = False

    @property
    def running(self) -> bool:
        """True from ``start`` until the job's ``finished`` (or until ``abandon``)."""
        return self._active

    def start(
        self,
        func: Callable[..., Generator],
        *args,
        on_yield: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        on_finish: Callable[[], None],
        **kwargs,
    ):
        """Start ``func(*args, **kwargs)`` (a generator function) in a worker thread; return the worker."""
        from napari.qt.threading import thread_worker

        self.abandon()
        self._run += 1
        run = self._run
        worker = thread_worker(_shielded, start_thread=False)(func, args, kwargs)

        def yielded(event) -> None:
            if run != self._run:
                return
            if isinstance(event, Failed):
                on_error(event.error)
            else:
                on_yield(event)

        def finished() -> None:
            if run != self._run:
                return
            self._active = False
            self.worker = None
            on_finish()

        worker.yielded.connect(yielded)
        worker.finished.connect(finished)
        self.worker = worker
        self._active = True
        worker.start()
        return worker

    def abandon(self) -> None:
        """Ask the job to end and drop everything it still sends: for Cancel and for closing the viewer."""
        if self.worker is not None:
            self.worker.quit()
        self.worker = None
        self._active = False
        self._run += 1
