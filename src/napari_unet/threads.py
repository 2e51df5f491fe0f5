"""How many CPU threads the network runs on: chosen by the speed measured now, not by the number of cores.

On a busy machine PyTorch's default (one thread per core) oversubscribes the cores: with one busy neighbour
process on 2 cores, 2 threads trained 0.45x as many steps as 1 thread. A ``ThreadChooser`` times the work a
loop already does (training steps, prediction tiles): after a few warm-up units it runs each candidate count
for a short trial, keeps the fastest, and runs the trials again when the rate drops markedly (or, while it
runs fewer threads than the default, every ``RECHECK_SECONDS``: a neighbour that left frees the cores again).

A trial costs a little (a second or so at a slower count), so it runs only where the CPU is shared: over the
warm-up units the CPU time of the whole machine (``/proc/stat``) less the process's own is what others used;
where that is under ``FREE_OTHERS`` cores, nothing competes and the default count is kept until the rate
drops. Where the machine's CPU time cannot be read (not Linux), the trial always runs.

A run also starts with fewer threads where other processes kept more than ``BUSY_OTHERS`` cores busy since the
last run ended (or this module was imported): with two threads fighting a neighbour for one core, the first
steps, which carry one-off costs, took seconds each (2 steps in 11 s beside another PyTorch process).

``torch.set_num_threads`` applies to the calling thread's OpenMP pool (and PyTorch's own count): the chooser
restores the count it found when ``restore()`` is called at the end of a run. Everything that touches torch is
injectable (``get_threads``, ``set_threads``), and the rates come from the durations the caller reports, so
tests run on fake rates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

WARMUP_UNITS = 3  # units (steps, tiles) before the first trial: the first ones pay one-off costs
WARMUP_SECONDS = 0.3  # ... and this long after the first: long enough to see what other processes use
TRIAL_UNITS = 3  # units timed per candidate (after one unit that settles the new thread count)
TRIAL_SECONDS = 0.3  # ... and at least this long, so a trial is not one noisy step
DROP_RATIO = 0.6  # the rate fell below this fraction of the chosen count's trial rate: trial again
RECHECK_SECONDS = 20.0  # while fewer threads than the default run, trial again this often
DROP_WINDOW = 5  # units averaged before a drop is believed
FREE_OTHERS = 0.25  # other processes used fewer cores than this over the warm-up: the CPU is free, no trial
BUSY_OTHERS = 0.75  # other processes used more cores than this before the run: it starts with fewer threads

# the last choice in this process, per kind of work ("train", "predict"): the forest's n_jobs follows it
_LAST: dict[str, ThreadsChoice] = {}


def default_threads() -> int:
    """PyTorch's thread count for this thread (its default: one per core, or OMP_NUM_THREADS)."""
    import torch

    return max(1, int(torch.get_num_threads()))


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(int(n))


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None


def _clocks_now() -> tuple[float, float, float | None]:
    return time.perf_counter(), time.process_time(), machine_cpu_seconds()


def _others(before: tuple, after: tuple) -> float | None:
    """Cores other processes kept busy between two readings of (wall, own CPU, machine CPU), or None."""
    (wall0, own0, machine0), (wall, own, machine) = before, after
    if machine is None or machine0 is None or wall <= wall0:
        return None
    return max(0.0, (machine - machine0) - (own - own0)) / (wall - wall0)


# the clocks when the last run ended (or this module was imported): what others did since is a run's first guess
_SINCE = _clocks_now()


def others_since_last_run() -> float | None:
    """Cores other processes kept busy since the last run ended (None: unknown, or too short a time to tell)."""
    now = _clocks_now()
    return _others(_SINCE, now) if now[0] - _SINCE[0] >= WARMUP_SECONDS else None


def candidates(default: int, leave_core: bool = False) -> list[int]:
    """The counts to try, the default first: half of it, one for small machines, and one core fewer where a GUI
    thread shares the CPU (napari's own loop)."""
    found = [default, max(1, default // 2)]
    if default <= 4:
        found.append(1)
    if leave_core and default > 1:
        found.append(default - 1)
    return list(dict.fromkeys(found))


@dataclass
class ThreadsChoice:
    """What ran: the count kept, the rates measured (units per second per count), and what units they were."""

    threads: int
    default: int
    rates: dict[int, float] = field(default_factory=dict)
    unit: str = "steps"
    fixed: str = ""  # why no trial ran ("" when the count was measured)
    free: bool = False  # other processes used under FREE_OTHERS cores: the default was kept without a trial
    note: str = ""  # why the run started with fewer threads than the default, before any measurement

    def summary(self) -> str:
        """e.g. '1 thread: 2.1 steps/s vs 0.9 with 2 (fewer threads ran faster: the CPU is busy)'."""
        plural = "thread" if self.threads == 1 else "threads"
        if self.free and self.threads in self.rates:
            return f"{self.threads} {plural}: {_fmt(self.rates[self.threads])} {self.unit}/s (the CPU was free)"
        if self.fixed or self.threads not in self.rates:
            return f"{self.threads} {plural} ({self.fixed or self.note or 'too short a run to measure'})"
        others = ", ".join(
            f"{_fmt(rate)} with {n}" for n, rate in sorted(self.rates.items(), reverse=True) if n != self.threads
        )
        why = ""
        if self.threads < self.default:
            why = " (fewer threads ran faster: the CPU is busy)"
        elif others:
            why = " (the fastest)"
        versus = f" vs {others}" if others else ""
        return f"{self.threads} {plural}: {_fmt(self.rates[self.threads])} {self.unit}/s{versus}{why}"


def _fmt(rate: float) -> str:
    return f"{rate:.3g}" if rate < 100 else f"{rate:,.0f}"


class ThreadChooser:
    """Chooses the thread count of one loop from the durations of its units (``observe``)."""

    def __init__(
        self,
        kind: str = "train",
        unit: str = "steps",
        threads: int | None = None,
        leave_core: bool = False,
        get_threads: Callable[[], int] = default_threads,
        set_threads: Callable[[int], None] = _set_torch_threads,
        warmup: int = WARMUP_UNITS,
        trial_units: int = TRIAL_UNITS,
        trial_seconds: float = TRIAL_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
        own_cpu: Callable[[], float] = time.process_time,
        machine_cpu: Callable[[], float | None] = machine_cpu_seconds,
        others_before: float | None | str = "auto",
    ) -> None:
        self.kind = kind
        self.leave_core = leave_core
        self._clocks = (clock, own_cpu, machine_cpu)
        self._started: tuple | None = None  # the clocks at the end of the first unit
        self._warm = False
        self.others: float | None = None  # cores other processes used over the warm-up (None: unknown)
        self._reference: float | None = None  # the rate a drop is measured against
        self._set = set_threads
        self.original = get_threads()
        self.warmup, self.trial_units, self.trial_seconds = warmup, trial_units, trial_seconds
        self.choice = ThreadsChoice(self.original, self.original, unit=unit)
        self.queue: list[int] = []  # candidates still to try in the current trial
        self.trying: int | None = None
        self._units = self._seconds = 0.0  # the current trial's work and time
        self._count = 0  # units timed in the current trial
        self._current = self.original  # the count in effect
        self._settle = 0  # units to skip after a change of count
        self._seen = 0
        self._since_trial = 0.0
        self._recent: list[float] = []  # recent rates at the chosen count
        self._candidates = candidates(self.original, leave_core)
        self._trial: dict[int, float] = {}  # rates of the trial under way
        if threads is not None:
            self.choice.threads, self.choice.fixed = int(threads), "asked for"
            self._apply(int(threads))
            self._settle = 0
            _LAST[kind] = self.choice
        elif len(self._candidates) == 1:
            self.choice.fixed = "one core"
        else:  # others were busy before the run: start with fewer threads (the trial still compares them)
            before = others_since_last_run() if others_before == "auto" else others_before
            last = _LAST.get(kind)
            if before is not None and before >= BUSY_OTHERS:
                self._start_with(self._candidates[1], f"other processes kept {before:.1f} cores busy")
            elif before is None and last is not None and last.rates and last.threads in self._candidates[1:]:
                self._start_with(last.threads, "the count the last run chose")  # a round right after another

    def _start_with(self, n: int, why: str) -> None:
        self._apply(n)
        self._settle = 0
        self.choice.threads, self.choice.note = n, f"started with fewer: {why}"
        _LAST[self.kind] = self.choice  # also what the forest's n_jobs follows

    @property
    def threads(self) -> int:
        """The count in effect now (during a trial, the one tried)."""
        return self._current

    @property
    def measuring(self) -> bool:
        return self.trying is not None

    def _apply(self, n: int) -> None:
        if n != self._current:
            self._set(n)
            self._current = n
            self._settle = 1

    def _start_trial(self, fewer_first: bool = False) -> None:
        self._trial = {}
        self.queue = self._candidates[1:] + self._candidates[:1] if fewer_first else list(self._candidates)
        self._next_candidate()

    def _next_candidate(self) -> None:
        self.trying = self.queue.pop(0)
        self._units = self._seconds = 0.0
        self._count = 0
        self._apply(self.trying)

    def observe(self, seconds: float, units: float = 1.0) -> None:
        """One unit of work (a step, a tile of ``units`` pixels) took ``seconds`` at the current count."""
        if self.choice.fixed or seconds <= 0:
            return
        self._seen += 1
        self._since_trial += seconds
        if self._started is None:  # the first unit pays one-off costs: the warm-up is timed from its end
            self._started = tuple(c() for c in self._clocks)
            return
        if not self._warm:
            if self._seen >= self.warmup and self._clocks[0]() - self._started[0] >= WARMUP_SECONDS:
                self._warm = True
                self._warmed(seconds, units)  # is the CPU shared? a trial, or the default kept
            return
        if self._settle:
            self._settle -= 1
            return
        if self.trying is not None:
            self._trial_unit(seconds, units)
        else:
            self._watch(seconds, units)

    def _warmed(self, seconds: float, units: float) -> None:
        self.others = _others(self._started, tuple(c() for c in self._clocks))
        # nothing else competes: keep the default (in the viewer, napari's own thread and the previews compete
        # from inside the process, where the machine's CPU time cannot tell them apart: the trial runs)
        free = self.others is not None and self.others < FREE_OTHERS and self._current == self.original
        if free and not self.leave_core:
            self.choice.rates, self.choice.free = {self._current: units / seconds}, True
            _LAST[self.kind] = self.choice
            return
        # others kept a core busy: fewer threads first, the likelier winner, in effect if the run (a plane of a
        # few tiles) ends before the trial does (a 2048 x 2048 plane beside a neighbour: 0.45x idle with 2)
        fewer_first = self.others is not None and self.others >= BUSY_OTHERS and self._current == self.original
        if fewer_first:
            self.choice.threads = self._candidates[1]
            self.choice.note = f"started with fewer: other processes kept {self.others:.1f} cores busy"
            _LAST[self.kind] = self.choice
        self._start_trial(fewer_first)

    def _trial_unit(self, seconds: float, units: float) -> None:
        self._units += units
        self._seconds += seconds
        self._count += 1
        if self._count < self.trial_units or self._seconds < self.trial_seconds:
            return
        self._trial[self.trying] = self._units / self._seconds
        if self.queue:
            self._next_candidate()
            return
        best = max(self._trial, key=lambda n: self._trial[n])  # ties: the earlier, the default
        self.trying = None
        self._reference = self._trial[best]
        self._recent = []
        self._since_trial = 0.0
        self._apply(best)
        self.choice.threads, self.choice.rates, self.choice.free = best, dict(self._trial), False
        _LAST[self.kind] = self.choice

    def _watch(self, seconds: float, units: float) -> None:
        """At the chosen count: trial again when the rate drops markedly, or now and then below the default."""
        self._recent = [*self._recent[-(DROP_WINDOW - 1) :], units / seconds]
        if len(self._recent) < DROP_WINDOW:
            return
        mean = sum(self._recent) / DROP_WINDOW
        if self._reference is None:  # the CPU was free: the first window is the rate to hold
            self._reference = mean
        dropped = mean < DROP_RATIO * self._reference
        below_default = self.choice.threads < self.choice.default and self._since_trial >= RECHECK_SECONDS
        if dropped or below_default:
            self._start_trial()

    def restore(self) -> ThreadsChoice:
        """Give the thread count found at the start back (the count is per process thread); returns the choice."""
        global _SINCE
        self._set(self.original)
        self._current = self.original
        _SINCE = _clocks_now()
        return self.choice


@contextmanager
def chosen_threads(kind: str = "train", **options) -> Iterator[ThreadChooser]:
    """A ``ThreadChooser`` for a run, whose thread count is restored however the run ends."""
    chooser = ThreadChooser(kind, **options)
    try:
        yield chooser
    finally:
        chooser.restore()


def last_choice(kind: str = "train") -> ThreadsChoice | None:
    """The last choice made in this process for this kind of work, or None."""
    return _LAST.get(kind)


def preferred_jobs(kind: str = "train") -> int:
    """Worker threads for other CPU work (the forest's ``n_jobs``, which runs before the network's first step):
    the last count chosen or asked for in this process, else every core."""
    choice = _LAST.get(kind)
    return choice.threads if choice is not None else (os.cpu_count() or 1)
