"""The one vocabulary of training events, for the core loop, the train session the widget runs, and the CLI.

``Trainer.run()`` yields ``Preparing``, ``Prepared``, ``Step``, ``Epoch`` and finally ``Done``, which carries
the trained model. A train session (``jobs.train_session``: rounds of training while the user paints) yields
``Preparing``, ``Step``, ``Epoch`` and ``Done`` with steps counted over the whole session (its rounds'
``Prepared`` become the forest's first ``Preview``), plus ``Round``, ``Preview`` and ``Notice``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ..model import UNet


@dataclass(frozen=True)
class Step:
    step: int
    epoch: int
    loss: float
    elapsed: float
    fraction: float  # 0..1 of the run (time or epochs, whichever is further)


@dataclass(frozen=True)
class Preparing:
    """Pseudo-labels under way (scribbles only): ``done`` of ``total`` tiles."""

    done: int
    total: int
    elapsed: float


@dataclass(frozen=True)
class Prepared:
    """Training data ready; for scribbles, the forest's pseudo-labels can serve as a first preview."""

    elapsed: float
    pseudo_tiles: int  # tiles pseudo-labelled (0 without pseudo-labels)
    pseudo_total: int  # tiles that needed them
    forest_val_dice: float | None  # the forest's Dice on the held-out strokes, to compare the U-Net with


@dataclass(frozen=True)
class Epoch:
    epoch: int
    step: int
    loss: float  # mean over the epoch
    val_dice: float | None  # Dice on held-out annotated pixels; None when too little was annotated
    elapsed: float
    fraction: float


@dataclass(frozen=True)
class Done:
    model: UNet = field(repr=False)
    steps: int
    epochs: int
    elapsed: float
    loss: float | None
    val_dice: float | None
    stopped: bool  # True when stop() ended the run early
    skipped: int = 0  # steps skipped because the loss or a gradient was NaN or inf
    plateau: bool = False  # True once the held-out score stopped improving (the annealing that follows may
    # still have been cut short by the budget: ``reason`` says what ended the run)
    forest_val_dice: float | None = None  # the pseudo-labelling forest's held-out Dice (scribbles)
    reason: str = ""  # why the run ended: one of END_WORDS' keys ("" for a Done made by hand)
    # a continued model (``model=`` given): True when the run did not beat the model it started from, whose
    # weights ``model`` then holds again; the two held-out scores that decided (``continuation.Verdict``)
    kept_previous: bool = False
    previous_val_dice: float | None = None
    trained_val_dice: float | None = None
    threads: str = ""  # how many CPU threads ran and why (``threads.ThreadsChoice.summary``)
    verdict: str = ""  # 'ok', 'poor' or 'useless' (``verdict.py``; "" for a Done made by hand)
    verdict_reason: str = ""  # a plain sentence when the verdict is not 'ok'

    @property
    def usable(self) -> bool:
        """False when the run's verdict says the model is poor or useless."""
        return self.verdict in ("", "ok")

    def end_words(self) -> str:
        """Why the run ended, in a few words for a progress bar or a status line."""
        if self.reason == EPOCHS:
            return f"done: {self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        return END_WORDS.get(self.reason, "stopped" if self.stopped else "done")


# why a run ended (``Done.reason``), and how the CLI and the widget say it
STOPPED = "stopped"  # stop() was called: Stop, Ctrl-C, a removed layer
NOT_FINITE = "not finite"  # the loss was not finite for MAX_BAD_STEPS steps in a row
PLATEAU = "plateau"  # the held-out score stopped improving, and the annealing after it ended
TIME_LIMIT = "time limit"  # the time budget was used
EPOCHS = "epochs"  # the epochs asked for were trained
END_WORDS = {
    STOPPED: "stopped",
    NOT_FINITE: "stopped: the loss was not finite",
    PLATEAU: "done: it had stopped improving",
    TIME_LIMIT: "done: time budget used",
}


@dataclass(frozen=True)
class View:
    """The region the user looks at: image number, leading (Z/T) index, and a box in the plane."""

    image: int
    plane: tuple[int, ...]
    rows: tuple[int, int]
    cols: tuple[int, int]


@dataclass(frozen=True)
class Round:
    number: int  # 1, 2, ...
    step: int  # global step at which the round starts
    mode: str  # 'sparse' or 'dense'
    n_classes: int
    annotated: int  # annotated pixels used for training


@dataclass(frozen=True)
class Preview:
    view: View
    labels: np.ndarray  # (rows, cols) class labels of the view box
    step: int
    # (rows, cols) float32 in [0, 1] (0 = sure) of the same box when the session maps uncertainty; None otherwise
    # (not asked, the forest's preview, a volume model)
    uncertainty: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Notice:
    message: str


#: what ``Trainer.run()`` yields; a train session adds ``Round``, ``Preview`` and ``Notice``
Event = Preparing | Prepared | Step | Epoch | Done
SessionEvent = Event | Round | Preview | Notice
