"""The thread count is chosen by the rate measured (fake rates here: no wall time is asserted)."""

from __future__ import annotations

import pytest
import torch

from napari_unet import threads
from napari_unet.threads import ThreadChooser, candidates


@pytest.fixture(autouse=True)
def _no_earlier_choices(monkeypatch):
    """Each test starts as a fresh process would: no count chosen before."""
    monkeypatch.setattr(threads, "_LAST", {})


class FakeMachine:
    """Thread counts set by the chooser, the seconds a unit takes at each count, and the clocks: wall time,
    this process's CPU time, and the machine's (``others`` cores busy with other processes)."""

    def __init__(self, seconds: dict[int, float], count: int = 2, others: float = 1.0) -> None:
        self.seconds = dict(seconds)
        self.count = count
        self.others = others
        self.history: list[int] = []
        self.wall = self.own = self.machine = 0.0

    def set(self, n: int) -> None:
        self.count = n
        self.history.append(n)

    def run(self, chooser: ThreadChooser, units: int) -> None:
        for _ in range(units):
            took = self.seconds[self.count]
            self.wall += took
            own = took * min(self.count, 2 - self.others)
            self.own += own
            self.machine += own + took * self.others
            chooser.observe(took)


def _chooser(machine: FakeMachine, **kw) -> ThreadChooser:
    clocks = dict(clock=lambda: machine.wall, own_cpu=lambda: machine.own, machine_cpu=lambda: machine.machine)
    options = {**clocks, "others_before": None, **kw}  # the real machine's load before the run plays no part
    return ThreadChooser(get_threads=lambda: machine.count, set_threads=machine.set, **options)


def test_candidates_try_fewer_threads():
    assert candidates(2) == [2, 1]
    assert candidates(1) == [1]
    assert candidates(8) == [8, 4]
    assert candidates(8, leave_core=True) == [8, 4, 7]


def test_a_free_cpu_keeps_the_default_without_a_trial():
    machine = FakeMachine({2: 0.1, 1: 0.18}, others=0.0)
    chooser = _chooser(machine)
    machine.run(chooser, 40)
    assert machine.history == [] and chooser.threads == 2
    assert chooser.others == 0.0
    assert chooser.choice.summary() == "2 threads: 10 steps/s (the CPU was free)"


def test_a_free_cpu_that_gets_busy_is_measured_again():
    machine = FakeMachine({2: 0.1, 1: 0.18}, others=0.0)
    chooser = _chooser(machine)
    machine.run(chooser, 20)
    machine.seconds, machine.others = {2: 0.45, 1: 0.2}, 1.0
    machine.run(chooser, 40)
    assert chooser.threads == 1 and "busy" in chooser.choice.summary()


def test_in_the_viewer_the_trial_runs_even_on_a_free_cpu():
    machine = FakeMachine({2: 0.3, 1: 0.2}, others=0.0)  # napari's thread and the previews compete from inside
    chooser = _chooser(machine, leave_core=True)
    machine.run(chooser, 40)
    assert 1 in machine.history and chooser.threads == 1


def test_a_run_after_a_busy_spell_starts_with_fewer_threads():
    machine = FakeMachine({2: 0.45, 1: 0.2})
    chooser = _chooser(machine, others_before=1.0)
    assert machine.history == [1] and chooser.threads == 1  # before the first (costly) step
    assert "started with fewer" in chooser.choice.summary()
    machine.run(chooser, 40)
    assert 2 in machine.history and chooser.threads == 1  # then measured like any other run


def test_a_round_right_after_a_busy_round_starts_where_it_ended():
    machine = FakeMachine({2: 0.45, 1: 0.2})
    first = _chooser(machine, kind="test-rounds")
    machine.run(first, 30)
    assert first.threads == 1
    first.restore()
    second = _chooser(machine, kind="test-rounds")  # no time to see what others did since: the last choice
    assert second.threads == 1 and machine.count == 1


def test_a_run_started_with_fewer_threads_on_a_cpu_now_free_measures_both():
    machine = FakeMachine({2: 0.1, 1: 0.18}, count=2, others=0.0)
    chooser = _chooser(machine, others_before=1.0)
    machine.run(chooser, 40)
    assert chooser.threads == 2 and machine.count == 2


def test_where_the_machine_cpu_is_unknown_the_trial_runs():
    machine = FakeMachine({2: 0.1, 1: 0.18}, others=0.0)
    chooser = _chooser(machine, machine_cpu=lambda: None)
    machine.run(chooser, 40)
    assert 1 in machine.history and chooser.threads == 2


def test_idle_machine_keeps_the_default():
    machine = FakeMachine({2: 0.1, 1: 0.18})  # a neighbour is measured, but two threads still run faster
    chooser = _chooser(machine)
    machine.run(chooser, 40)
    assert chooser.threads == 2 and machine.count == 2
    assert chooser.choice.rates[2] > chooser.choice.rates[1]
    assert 1 in machine.history  # one thread was tried
    assert chooser.choice.summary().startswith("2 threads: 10 steps/s vs 5.56 with 1")


def test_busy_machine_runs_fewer_threads_and_says_why():
    machine = FakeMachine({2: 0.45, 1: 0.2})  # a busy neighbour: two threads fight over one core
    chooser = _chooser(machine)
    machine.run(chooser, 30)
    assert chooser.threads == 1 and machine.count == 1
    text = chooser.choice.summary()
    assert text.startswith("1 thread: 5 steps/s vs 2.22 with 2") and "busy" in text
    chooser.restore()
    assert machine.count == 2


def test_a_run_too_short_for_the_trial_on_a_busy_cpu_ends_on_fewer_threads():
    machine = FakeMachine({2: 0.45, 1: 0.2})  # a plane of a few tiles beside a busy neighbour
    chooser = _chooser(machine, unit="tiles")
    machine.run(chooser, 5)  # the warm-up saw a busy core: one thread from then on, before the trial ends
    assert machine.history == [1] and chooser.threads == 1 and chooser.measuring
    assert chooser.choice.summary() == "1 thread (started with fewer: other processes kept 1.0 cores busy)"
    machine.run(chooser, 30)  # a longer run: the trial compares both and keeps the faster
    assert chooser.threads == 1 and set(chooser.choice.rates) == {1, 2}


def test_a_drop_in_rate_measures_again():
    machine = FakeMachine({2: 0.1, 1: 0.18})
    chooser = _chooser(machine)
    machine.run(chooser, 30)
    assert chooser.threads == 2
    machine.seconds = {2: 0.45, 1: 0.2}  # a neighbour starts
    machine.run(chooser, 40)
    assert chooser.threads == 1 and machine.count == 1


def test_fewer_threads_are_checked_again_when_the_neighbour_leaves():
    machine = FakeMachine({2: 0.45, 1: 0.2})
    chooser = _chooser(machine)
    machine.run(chooser, 30)
    assert chooser.threads == 1
    machine.seconds = {2: 0.1, 1: 0.2}  # the neighbour left: 1 thread keeps its rate, no drop to notice
    machine.run(chooser, int(threads.RECHECK_SECONDS / 0.2) + 30)
    assert chooser.threads == 2


def test_warmup_units_are_not_measured():
    machine = FakeMachine({2: 0.1, 1: 0.18})
    chooser = _chooser(machine)
    machine.seconds[2] = 30.0  # a first step that pays one-off costs at the default count
    machine.run(chooser, 1)
    machine.seconds[2] = 0.1
    machine.run(chooser, threads.WARMUP_UNITS - 1)
    assert machine.history == []
    machine.run(chooser, 40)
    assert chooser.threads == 2


def test_a_count_asked_for_is_kept():
    machine = FakeMachine({2: 0.45, 1: 0.2, 3: 1.0})
    chooser = _chooser(machine, threads=3)
    machine.run(chooser, 40)
    assert machine.history == [3] and chooser.threads == 3
    assert "asked for" in chooser.choice.summary()
    chooser.restore()
    assert machine.count == 2


def test_a_short_run_says_it_did_not_measure():
    machine = FakeMachine({2: 0.1, 1: 0.18})
    chooser = _chooser(machine)
    machine.run(chooser, 2)
    assert "too short" in chooser.choice.summary()


def test_the_forest_follows_the_last_choice():
    machine = FakeMachine({2: 0.45, 1: 0.2})
    chooser = _chooser(machine, kind="test-forest")
    machine.run(chooser, 30)
    assert threads.preferred_jobs("test-forest") == 1


def test_torch_threads_are_restored():
    before = torch.get_num_threads()
    chooser = ThreadChooser(threads=1)
    assert torch.get_num_threads() == 1
    chooser.restore()
    assert torch.get_num_threads() == before


def test_prediction_tells_the_chooser_every_batch_and_restores_threads(tiny_model, monkeypatch):
    import numpy as np

    from napari_unet import prediction

    seen: list[float] = []
    restored: list[bool] = []

    class Recording(ThreadChooser):
        def observe(self, seconds: float, units: float = 1.0) -> None:
            seen.append(units)
            super().observe(seconds, units)

        def restore(self):
            restored.append(True)
            return super().restore()

    monkeypatch.setattr(prediction, "ThreadChooser", Recording)
    before = torch.get_num_threads()
    image = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    prediction.predict(tiny_model, image, tile_size=64, overlap=16, batch_size=1, device="cpu")
    assert len(seen) >= 4 and len(set(seen)) == 1 and 0 < seen[0] <= 64 * 64 / 1e6  # Mpx per batch of one tile
    assert restored == [True] and torch.get_num_threads() == before


def test_training_runs_on_the_count_asked_for_says_it_and_restores(blobs, tiny):
    from napari_unet.training import Done, Step, Trainer

    before = torch.get_num_threads()
    counts = []
    trainer = Trainer(*blobs, mode="dense", **{**tiny, "threads": 1})
    for event in trainer.run():
        if isinstance(event, Step):
            counts.append(torch.get_num_threads())
    assert isinstance(event, Done) and set(counts) == {1}
    assert event.threads == "1 thread (asked for)"
    assert torch.get_num_threads() == before


def test_a_stopped_training_restores_the_threads(blobs, tiny):
    from napari_unet.training import Trainer

    before = torch.get_num_threads()
    run = Trainer(*blobs, mode="dense", **{**tiny, "threads": 1}).run()
    next(event for event in run if type(event).__name__ == "Step")
    assert torch.get_num_threads() == 1
    run.close()  # the caller drops the run mid-way (an error, a closed window)
    assert torch.get_num_threads() == before
