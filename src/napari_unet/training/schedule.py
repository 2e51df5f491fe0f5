"""How long a run trains and how fast it learns: the budget, the learning rate, the plateau, short budgets.

- The run's progress (``fraction``) is its time or its epochs, whichever is further.
- The learning rate warms up over 10 steps, then follows a cosine decay over the run down to
  ``min_lr_fraction``; later rounds of one session start later in the same curve (``schedule_start``).
- A plateau (no held-out improvement for ``patience`` epochs, after ``min_steps``) starts a short cosine
  annealing to the floor, after which the run ends. A number of epochs asked for is trained in full.
- A plateau is only declared once the score has truly flattened: the slope of the held-out scores over the
  recent half of the run (at least 2 ``patience`` + 1 epochs), plus its standard error, times the time budget
  left, must promise less than ``PLATEAU_GAIN`` (Dice). A score still rising slowly (the demo's Dice went
  0.85 -> 0.87 in 20 s, under the 0.005-per-5-epochs rule alone) keeps the run going: a time limit given is
  used unless nothing more is to be gained from it.
- A budget that affords fewer than ``SHORT_RUN_STEPS`` steps trains on half-size patches and batches; decided
  after step 2 (near the line, on the faster of steps 2 and 3) and once more after the first thread trial
  (``ShortRunPatch``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .config import PLATEAU_GAIN, SHORT_RUN_STEPS, TrainConfig

if TYPE_CHECKING:
    from ..threads import ThreadChooser


class Schedule:
    """The budget, learning-rate and plateau state of one run."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.plateau = False  # True once the held-out score stopped improving
        self.anneal: tuple[int, int, float] | None = None  # (step, length, lr scale) once a plateau is seen
        self.last_fraction = 0.0
        self._best: float | None = None
        self._since_best = 0
        self._scores: list[tuple[float, float]] = []  # (elapsed seconds, score) of every epoch

    def fraction(self, elapsed: float, steps: int) -> float:
        """0..1 of the run: time or epochs, whichever is further."""
        cfg = self.config
        parts = []
        if cfg.time_limit is not None:
            parts.append(elapsed / cfg.time_limit)
        if cfg.epochs is not None:
            parts.append(steps / (cfg.epochs * cfg.steps_per_epoch))
        return min(1.0, max(parts))

    def annealed(self, steps: int) -> bool:
        """The annealing after a plateau is over: the run ends."""
        return self.anneal is not None and steps >= self.anneal[0] + self.anneal[1]

    def lr_scale(self, steps: int, fraction: float) -> float:
        """Warm-up, then cosine decay over the run; after a plateau, a short cosine annealing to the floor."""
        cfg = self.config
        warm = 1.0 if cfg.schedule_start > 0 else min(1.0, (steps + 1) / 10)
        where = cfg.schedule_start + (1 - cfg.schedule_start) * fraction
        scale = cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * where))
        if self.anneal is not None:
            at, length, from_scale = self.anneal
            k = min(1.0, (steps - at) / length)
            floor = cfg.min_lr_fraction
            scale = min(scale, floor + (from_scale - floor) * 0.5 * (1 + math.cos(math.pi * k)))
        return warm * scale

    def check_plateau(
        self, val_dice: float | None, epoch_loss: float, steps: int, elapsed: float | None = None
    ) -> None:
        """Track the best held-out Dice (or, without validation, the epoch loss); a plateau starts the annealing.
        ``elapsed``: seconds into the run, for the slope of the scores (without it, the best alone decides)."""
        cfg = self.config
        if not cfg.until_plateau or cfg.epochs is not None or self.anneal is not None:
            return  # a number of epochs asked for is trained in full
        score = val_dice if val_dice is not None else -epoch_loss
        margin = 0.005 if val_dice is not None else 0.02 * abs(epoch_loss)
        if self._best is None or score > self._best + margin:
            self._best, self._since_best = score, 0
        else:
            self._since_best += 1
        if elapsed is not None:
            self._scores.append((elapsed, score))
        if self._since_best < cfg.patience or steps < cfg.min_steps:
            return
        gain = PLATEAU_GAIN if val_dice is not None else 0.02 * abs(epoch_loss)
        if elapsed is not None and self.expected_gain(elapsed) >= gain:
            return  # still rising at a useful rate: not a plateau
        length = max(3 * cfg.steps_per_epoch, steps // 4)
        self.anneal = (steps, length, self.lr_scale(steps, self.last_fraction))
        self.plateau = True

    def expected_gain(self, elapsed: float) -> float:
        """The score the rest of the time budget could add at the recent rate: the least-squares slope of the
        scores over the last half of the run (at least 2 ``patience`` + 1 epochs) plus its standard error, times
        the seconds left. On a flat, noisy score the error shrinks as epochs come and the slope is as often
        negative as positive, so a plateau still comes within epochs."""
        cfg = self.config
        if cfg.time_limit is None:
            return 0.0
        recent = [(t, s) for t, s in self._scores if t >= elapsed / 2]
        if len(recent) < 2 * cfg.patience + 1:  # too few points to tell a slope from noise: take more
            recent = self._scores[-(2 * cfg.patience + 1) :]
        times = np.array([t for t, _ in recent])
        if len(recent) < 3 or np.ptp(times) <= 0:
            return 0.0
        scores = np.array([s for _, s in recent])
        (slope, offset), cov = np.polyfit(times, scores, 1, cov="unscaled")
        residual = scores - (slope * times + offset)
        error = float(np.sqrt(max(float(cov[0, 0]), 0.0) * np.sum(residual**2) / (len(recent) - 2)))
        # the slope's one-sigma upper bound: a run stops only when it is clear that little is left to gain
        return max(float(slope) + error, 0.0) * max(cfg.time_limit - elapsed, 0.0)


def pseudo_deadline(cfg: TrainConfig, start: float) -> float:
    """When the forest's pseudo-labels must be done: ``pseudo_time`` of the time budget, from ``start``."""
    return math.inf if cfg.time_limit is None else start + cfg.pseudo_time * cfg.time_limit


def short_run_patch(
    cfg: TrainConfig, elapsed: float, step_seconds: float, depth: int, continued: bool = False
) -> tuple[int, int] | None:
    """(patch side, batch) for a budget that affords fewer than ``SHORT_RUN_STEPS`` steps, else None.

    Decided by ``ShortRunPatch`` from the durations of the first steps but the first (it pays one-off costs).
    Half the side and half the batch give eight times the steps, which a few seconds need more than context
    (10 s on an AVX2 CPU: ~20 steps of 8 x 128 px; 8.5 s on 2048 x 2048 with scribbles, AVX2 fp32, 6 seeds: Dice 0.61 on average
    with half the side alone, 0.76 with half the batch too; 0.19-0.35 before). Runs that afford more, and
    runs of a number of epochs, are unchanged; a half patch below twice the network's coarsest grid is kept.
    A ``continued`` model is never halved: it has learnt at its patch size, half patches
    shift its batch-norm statistics, and a round of corrections needs few steps (20 s rounds of
    benchmarks/correction_rounds.py: worst round -0.005 Dice at full size, -0.008 halved; left-half gains +0.061 / +0.056).
    """
    if cfg.time_limit is None or step_seconds <= 0 or cfg.volume or continued:  # volume patches are small already
        return None
    affordable = (cfg.time_limit - elapsed) / step_seconds
    smaller = cfg.patch_size // 2
    if affordable < SHORT_RUN_STEPS and smaller >= 2 ** (depth + 1):
        return smaller, max(2, cfg.batch_size // 2)  # batch norm needs a few samples
    return None


class ShortRunPatch:
    """When a run decides ``short_run_patch``: after step 2 (the first pays one-off costs), or, when step 2 puts
    the run near the line (at least half of ``SHORT_RUN_STEPS`` affordable), on the faster of steps 2 and 3: one
    step alone is noisy (on the AVX2 emulation one slow second step halved one 60 s run's patches and not the
    next one's, 775 half-size steps against 157 full-size), but a budget far below the line cannot spare a
    full-size step (10 s on 2048 x 2048 with scribbles, AVX2: deciding after step 3 cost ~5 of ~50 half-size
    steps, and Dice fell from 0.84-0.86 to 0.34-0.47 in 4 fresh runs each). Then once more when the first
    thread trial ends: a step timed while the CPU was oversubscribed (a busy neighbour, the default thread
    count) underrates what the chosen count affords; where the trial found a faster count, the full-size step
    is scaled by that speed-up and a run that now affords ``SHORT_RUN_STEPS`` steps goes back to full patches."""

    def __init__(self) -> None:
        self.early: list[float] = []  # durations of the full-size steps timed (2, and 3 near the line)
        self.threads: int | None = None  # the count they ran at
        self.revised = self.waiting = False

    def observe(self, trainer, chooser: ThreadChooser, took: float, elapsed: float) -> None:
        """After each step of ``trainer`` (it has ``config``, ``steps``, ``small_patch``, ``_adapt_patch``)."""
        if trainer.steps == 2 or (trainer.steps == 3 and self.waiting):
            self.early.append(took)
            self.threads = chooser.threads
            budget = trainer.config.time_limit
            self.waiting = trainer.steps == 2 and budget is not None and budget - elapsed >= took * SHORT_RUN_STEPS / 2
            if not self.waiting:  # (near the line, step 3 decides too)
                trainer._adapt_patch(elapsed, min(self.early))
            return
        rates = chooser.choice.rates
        if self.revised or not trainer.small_patch or chooser.measuring or len(rates) < 2:
            return
        self.revised = True
        speedup = rates.get(chooser.choice.threads, 0.0) / rates.get(self.threads, math.inf)
        if speedup > 1.0:
            trainer.small_patch = trainer.small_batch = None
            trainer._adapt_patch(elapsed, min(self.early) / speedup)
            if trainer.small_patch is None:
                trainer.sampler.patch = trainer.config.patch_size
