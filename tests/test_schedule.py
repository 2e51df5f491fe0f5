"""The plateau rule on synthetic held-out curves: a score still rising usefully never ends a run."""

from __future__ import annotations

import numpy as np

from napari_unet.training.config import TrainConfig
from napari_unet.training.schedule import Schedule


def _run(curve, time_limit: float = 60.0, epoch_seconds: float = 0.7, **cfg) -> float | None:
    """Feed one held-out Dice per epoch; the elapsed seconds at which a plateau was declared, or None."""
    config = TrainConfig(time_limit=time_limit, steps_per_epoch=20, **cfg)
    schedule = Schedule(config)
    t, steps = 0.0, 0
    while t + epoch_seconds <= time_limit:
        t += epoch_seconds
        steps += config.steps_per_epoch
        schedule.check_plateau(float(curve(t)), 0.1, steps, t)
        if schedule.plateau:
            return t
    return None


def test_a_slowly_rising_score_does_not_stop_the_demo():
    # the demo's case: Dice 0.85 -> 0.87 in 20 s, under the 0.005-per-5-epochs margin; some noise on top
    noise = np.random.default_rng(0).normal(0, 0.003, 1000)
    rising = lambda t: 0.85 + 0.001 * t + noise[int(t / 0.7)]  # noqa: E731
    stopped = _run(rising)
    assert stopped is None or stopped > 45  # not before the gain left at this rate is below the margin
    # without the slope (the rule before), the same curve was a plateau
    old = Schedule(TrainConfig(time_limit=60.0))
    steps = 0
    for k in range(1, 60):
        steps += 20
        old.check_plateau(rising(k * 0.7), 0.1, steps)
        if old.plateau:
            break
    assert old.plateau


def test_a_flat_score_stops():
    noise = np.random.default_rng(1).normal(0, 0.003, 1000)
    flat = lambda t: 0.9 + noise[int(t / 0.7)]  # noqa: E731
    stopped = _run(flat)
    assert stopped is not None and stopped < 30


def test_a_rise_that_levels_off_stops_once_flat():
    curve = lambda t: 0.9 - 0.4 * np.exp(-t / 4)  # noqa: E731
    stopped = _run(curve, time_limit=120)
    assert stopped is not None and 20 < stopped < 90


def test_a_slow_rise_near_the_end_of_the_budget_stops():
    # 0.0005 Dice per second with 3 s left promises less than the margin: nothing to wait for
    curve = lambda t: 0.85 + 0.0005 * t  # noqa: E731
    config = TrainConfig(time_limit=60.0, steps_per_epoch=20)
    schedule = Schedule(config)
    for k in range(1, 60):
        schedule.check_plateau(curve(57 * k / 59), 0.1, 200 + 20 * k, 57 * k / 59)
    assert schedule.expected_gain(57.0) < 0.01
    assert schedule.plateau
