"""The thread count is chosen by the rate measured (fake rates here: no wall time is asserted)."""

from __future__ import annotations

import torch

from napari_unet import threads
from napari_unet.threads import ThreadChooser, candidates


class FakeMachine:
    """Thread counts set by the chooser, and the seconds a unit takes at each count."""

    def __init__(self, seconds: dict[int, float], count: int = 2) -> None:
        self.seconds = dict(seconds)
        self.count = count
        self.history: list[int] = []

    def set(self, n: int) -> None:
        self.count = n
        self.history.append(n)

    def run(self, chooser: ThreadChooser, units: int) -> None:
        for _ in range(units):
            chooser.observe(self.seconds[self.count])


def _chooser(machine: FakeMachine, **kw) -> ThreadChooser:
    return ThreadChooser(get_threads=lambda: machine.count, set_threads=machine.set, **kw)


def test_candidates_try_fewer_threads():
    assert candidates(2) == [2, 1]
    assert candidates(1) == [1]
    assert candidates(8) == [8, 4]
    assert candidates(8, leave_core=True) == [8, 4, 7]


def test_idle_machine_keeps_the_default():
    machine = FakeMachine({2: 0.1, 1: 0.18})
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
    chooser.observe(30.0)  # a first step that pays one-off costs at the default count
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
