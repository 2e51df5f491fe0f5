"""The Train dock's summary: a poor or useless model is a warning, not 'Done'; the threads that ran are shown."""

from __future__ import annotations

from napari_unet._widgets import _train_progress
from napari_unet._widgets._train_progress import RunProgress
from napari_unet.model import UNet
from napari_unet.training.events import TIME_LIMIT, Done
from napari_unet.training.verdict import OK, USELESS


def _done(verdict: str, reason: str = "") -> Done:
    return Done(UNet(1, 1, filters=4, depth=2), 300, 15, 60.0, 0.2, 0.8, False, reason=TIME_LIMIT,
                threads="1 thread: 5 steps/s vs 2 with 2 (fewer threads ran faster: the CPU is busy)",
                verdict=verdict, verdict_reason=reason)  # fmt: skip


def test_a_useless_model_is_a_warning_not_done(qtbot, monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(_train_progress.c, "report_warning", warned.append)
    panel = RunProgress()
    panel.done(_done(USELESS, "the model labels every pixel background: it learnt nothing usable."))
    assert panel.status.value.startswith("<b>Warning: A useless model")
    assert "Done" not in panel.status.value and "every pixel background" in warned[0]
    assert "1 thread" in panel.status.value
    assert panel.bar.native.format() == "useless model"


def test_an_ok_model_is_done_and_says_why_it_ended_and_its_threads(qtbot, monkeypatch):
    monkeypatch.setattr(_train_progress.c, "report_warning", lambda text: None)
    panel = RunProgress()
    panel.done(_done(OK))
    assert panel.status.value.startswith("Done: 300 steps")
    assert "time budget used" in panel.status.value and "stopped improving" not in panel.status.value
    assert "CPU threads: 1 thread: 5 steps/s" in panel.status.value
