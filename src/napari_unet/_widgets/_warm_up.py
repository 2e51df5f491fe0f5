"""Torch's first-step costs paid once per process in the background, while the user looks and paints."""

from __future__ import annotations

import gc
import logging
import os
import threading

_started = False
_cancel = threading.Event()


def warm_up_in_background() -> None:
    """Once per process, pay torch's first-step costs (imports, oneDNN kernels: seconds) in a background
    thread while the user looks and paints, so that Train shows its first preview sooner.

    The thread is not a daemon: a daemon thread still inside torch when Python shuts down aborts the process
    ("terminate called without an active exception"). Quitting the application cancels it between phases,
    and Python's shutdown waits for the phase under way (well under a second).
    """
    global _started
    if _started or os.environ.get("NAPARI_UNET_NO_WARMUP"):
        return
    _started = True
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(_cancel.set)
    threading.Thread(target=_run, name="napari-unet-warm-up", daemon=False).start()


def _run() -> None:
    """The warm-up, with Python's cyclic garbage collector off while it runs: importing torch._dynamo allocates
    enough to trigger collections in this thread, and a collection here can free Qt objects of closed widgets
    off the GUI thread, which crashes Qt (a segmentation fault in 2 of 4 runs of tests/_widgets/test_docks_fit.py
    + test_end_to_end.py under Xvfb before this; 0 of 6 after). Cyclic garbage made meanwhile waits a few
    seconds, until the collector is back on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        if _cancel.is_set():
            return
        from ..inference import warm_up

        warm_up(should_stop=_cancel.is_set)
    except Exception:  # only an optimization: training works the same without it
        logging.getLogger("napari_unet").debug("warm-up failed", exc_info=True)
    finally:
        if collecting:
            gc.enable()
