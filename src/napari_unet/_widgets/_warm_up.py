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
    """The warm-up, with Python's cyclic garbage collector off while it runs, and what it imported frozen after.

    Importing torch._dynamo allocates enough to trigger collections in this thread, and a collection here can
    free Qt objects of closed widgets off the GUI thread, which crashes Qt (a segmentation fault in 2 of 4 runs
    of tests/_widgets/test_docks_fit.py + test_end_to_end.py under Xvfb with the collector on; 0 of 6 off).
    Re-enabled alone, the collector's next full pass on the GUI thread scans those millions of new objects:
    stalls of 116-244 ms (benchmarks/gui_stall.py); frozen (``gc.freeze``: kept for the life of the process, as
    modules are), none over 100 ms. Cyclic garbage made during the warm-up's seconds stays.
    """
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
        gc.freeze()  # the modules just imported live as long as the process: no collection need scan them
        if collecting:
            gc.enable()
