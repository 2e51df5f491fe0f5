"""Training: the config (every default), the event vocabulary, data preparation, validation, the schedule,
pseudo-labels and self-training, and the loop (``Trainer``).

``napari_unet.training`` re-exports the names a caller needs. The config and the events are torch-free and
the rest loads on first use (PEP 562), so the widgets and the CLI's argument parser import this package
without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .config import SELF_TRAIN_MIN_STEPS, SHORT_RUN_STEPS, TRUSTED_STEPS, TrainConfig, make_config
from .events import Done, Epoch, Event, Notice, Prepared, Preparing, Preview, Round, SessionEvent, Step, View

_LAZY = {"Trainer": "trainer", "train": "trainer", "trust_warning": "validation"}

__all__ = [
    "SELF_TRAIN_MIN_STEPS",
    "SHORT_RUN_STEPS",
    "TRUSTED_STEPS",
    "Done",
    "Epoch",
    "Event",
    "Notice",
    "Prepared",
    "Preparing",
    "Preview",
    "Round",
    "SessionEvent",
    "Step",
    "TrainConfig",
    "Trainer",
    "View",
    "make_config",
    "train",
    "trust_warning",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .trainer import Trainer, train
    from .validation import trust_warning
