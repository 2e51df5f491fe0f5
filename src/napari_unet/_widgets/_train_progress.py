"""How a training run is going: the progress bar, the loss / Dice curves and the status line, fed by the
train session's events."""

from __future__ import annotations

import html
import math

from magicgui.widgets import ProgressBar

from ..training.config import TrainConfig
from ..training.events import Done, Epoch, Preparing, Round, Step
from . import _common as c
from ._plot import CurvePlot

BAR_STEPS = 1000  # the bar's resolution


class RunProgress:
    """The progress bar, the curve plot and the status line of the Train dock."""

    def __init__(self) -> None:
        self.bar = ProgressBar(value=0, min=0, max=BAR_STEPS, label="")
        self.bar.native.setTextVisible(True)
        self.bar.native.setFormat("idle")
        self.plot = CurvePlot()
        self.plot_widget = c.wrap_qt(self.plot)
        self.status = c.wrapping_label()
        # every visible change costs a repaint of the window (~20 ms under software OpenGL): progress, status
        # and plot change together, at most twice a second (and at each epoch end)
        self._throttle = c.Throttle(0.5)
        self._config: TrainConfig | None = None

    def start(self, config: TrainConfig) -> None:
        self._config = config
        self.plot.clear()
        self.status.value = "Preparing the training data…"
        self.bar.native.setFormat("starting…")

    def preparing(self, event: Preparing) -> None:
        c.set_progress(self.bar, 0, f"pseudo-labels {event.done}/{event.total}")
        self.status.value = (
            f"Learning from the strokes with a quick forest: tile {event.done} of {event.total} "
            f"({c.format_seconds(event.elapsed)}); its result is the first preview."
        )

    def step(self, event: Step | Epoch, note: str = "") -> None:
        """A step or an epoch end of the session; ``note`` (why there is no preview) goes under the status."""
        epoch = isinstance(event, Epoch)
        self.plot.add_loss(event.step, event.loss)
        if epoch:
            self.plot.add_dice(event.step, event.val_dice)
            self.plot.set_no_validation_tip()
        if self._throttle.ready(force=epoch):
            self._show(event, note)
            self.plot.update()

    def _show(self, event: Step | Epoch, note: str) -> None:
        time_limit = self._config.time_limit if self._config is not None else None
        if time_limit:
            left = max(0.0, time_limit - event.elapsed)
        elif event.fraction > 0:
            left = event.elapsed * (1 - event.fraction) / event.fraction
        else:
            left = math.nan
        left_text = "at most " + c.format_seconds(left) + " left" if math.isfinite(left) else ""
        c.set_progress(self.bar, int(BAR_STEPS * event.fraction), f"{100 * event.fraction:.0f}%  ·  {left_text}")
        dice = next((v for _, v in reversed(self.plot.dice)), None)
        dice_text = f" · val Dice {dice:.3f}" if dice is not None else ""
        note = f"<br><small>{html.escape(note)}</small>" if note else ""
        text = f"Step {event.step} · loss {event.loss:.3f}{dice_text} · {c.format_seconds(event.elapsed)}{note}"
        if text != self.status.value:
            self.status.value = text

    def round(self, event: Round) -> None:
        if event.number > 1:
            self.plot.add_round(event.step)
            c.report_info(f"Training took in the new strokes ({event.annotated} annotated pixels).")
        what = "scribbles" if event.mode == "sparse" else "complete masks"
        self.status.value = (
            f"Round {event.number}: {event.annotated:,} annotated pixels ({what}), "
            f"{event.n_classes} class{'es' if event.n_classes > 1 else ''}."
        )

    def stopping(self, why: str = "Stopping…") -> None:
        self.status.value = why
        self.bar.native.setFormat("stopping…")

    def done(self, done: Done, model=None, kept: str | None = None, offered: bool = False) -> None:
        """The run's summary in the status line; the bar full, saying why the run ended. ``model`` is the model
        in memory after the run; ``kept`` says why the previous model was kept (``offered``: the new one is
        offered with 'Use the new one anyway')."""
        from ..training import trust_warning

        dice = f", val Dice {done.val_dice:.3f}" if done.val_dice is not None else ""
        loss = f", loss {done.loss:.3f}" if done.loss is not None else ""
        why = done.end_words().removeprefix("done: ")
        summary = f"{done.steps} steps in {c.format_seconds(done.elapsed)}{loss}{dice} ({why})."
        threads = f"<br><small>CPU threads: {html.escape(done.threads)}</small>" if done.threads else ""
        if done.val_dice is None and not self.plot.dice:
            self.plot.no_validation = True
            self.plot.set_no_validation_tip()
        if not kept and not done.usable:  # a poor or useless model is not passed off as done
            warning = f"A {done.verdict} model: {done.verdict_reason}"
            self.status.value = f"<b>Warning: {html.escape(warning)}</b><br>{summary}{threads}"
            c.report_warning(warning)
            c.set_progress(self.bar, BAR_STEPS, f"{done.verdict} model")
            self.plot.update()
            return
        self.status.value = f"Done: {summary}{threads}"
        if kept:
            offer = " 'Use the new one anyway' (under Model) takes the new one." if offered else ""
            self.status.value += f"<br><b>{html.escape(kept)}</b>{offer}"
            if not done.kept_previous:  # the session said so already (a Notice)
                c.report_warning(kept)
        warning = _kept_warning(model) if kept else trust_warning(done)
        if warning:
            self.status.value += f"<br><b>{html.escape(warning)}</b>"
            c.report_warning(warning)
        c.set_progress(self.bar, BAR_STEPS, done.end_words())
        self.plot.update()

    def failed(self, error: BaseException) -> None:
        self.status.value = "Training failed: " + c.describe(error)
        self.bar.native.setFormat("failed")


def _kept_warning(model) -> str | None:
    """The trust warning about a model kept from before the run: the steps it has had, over all its runs."""
    from ..meta import total_steps
    from ..training.config import TRUSTED_STEPS

    steps = total_steps(model) if model is not None else 0
    if steps >= TRUSTED_STEPS:
        return None
    return (
        f"Not to be trusted yet: the model in memory has had only {steps} training steps. Train longer (Train "
        "again with a higher time limit, and let it run), close programs that use the CPU, or annotate more."
    )


def skipped_warning(skipped: int) -> str:
    """What the user should know about steps skipped for a non-finite loss."""
    return (
        f"{skipped} training step{'s were' if skipped > 1 else ' was'} skipped because the loss was not a finite "
        "number (NaN or inf); the model keeps its last good weights. If this repeats, lower the learning rate or "
        "check the image for extreme values."
    )
