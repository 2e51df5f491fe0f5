"""Progress bars on stderr: training (a percentage of the run, with its loss) and prediction (planes)."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..training import Done, Trainer


def refresh_interval() -> float:
    """Seconds between bar redraws: a terminal redraws in place; a log (CI, a pipe) gets a line every 10 s instead
    of one per step."""
    return 0.5 if sys.stderr.isatty() else 10.0


def stop_reason(done: Done) -> str:
    """Why the run ended, for the bar's last postfix: a bar left at 34% must not look unfinished. The CLI's
    only Stop is Ctrl-C."""
    from ..training.events import STOPPED

    return "stopped by you (Ctrl-C)" if done.reason == STOPPED else done.end_words()


def run_training(trainer: Trainer, desc: str = "training") -> Done:
    """Iterate the trainer with a progress bar; the first Ctrl-C stops after the current step."""
    from tqdm import tqdm

    from ..training import Done, Epoch, Prepared, Preparing

    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        trainer.stop()
        print("\nstopping after this step and saving (Ctrl-C again to abort)", file=sys.stderr)
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    bar = tqdm(
        total=100,
        desc=desc,
        unit="%",
        bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
        mininterval=refresh_interval(),
    )
    done = None
    try:
        for event in trainer.run():
            if isinstance(event, Done):
                done = event
                # the run is over, however early: a full bar, and why it ended
                reason = stop_reason(done)
                bar.set_postfix_str(f"{bar.postfix}, {reason}" if bar.postfix else reason, refresh=False)
                bar.update(bar.total - bar.n)
                break
            if isinstance(event, Preparing):
                bar.set_postfix({"pseudo-labels": f"{event.done}/{event.total} tiles"}, refresh=False)
                bar.update(0)
                continue
            if isinstance(event, Prepared):
                continue
            post = {"step": event.step, "loss": f"{event.loss:.3f}"}
            if isinstance(event, Epoch) and event.val_dice is not None:
                post["val_dice"] = f"{event.val_dice:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.update(round(100 * event.fraction, 1) - bar.n)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    return done
