"""A light live plot of training loss and validation Dice (plain QPainter: repaints in well under a millisecond)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor("#f0a04b")
DICE_COLOR = QColor("#4bb3f0")
NO_VALIDATION = "no val Dice: too few annotated pixels"
NO_VALIDATION_TIP = (
    "No validation curve: too few pixels are annotated to hold some out (or holding out would remove a class "
    "from training). Paint more strokes or masks to see how well the model does on annotations it has not seen."
)


class CurvePlot(QWidget):
    """Loss (left axis, auto-scaled) and validation Dice (right axis, 0..1) against training step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[float, float]] = []
        self.dice: list[tuple[float, float]] = []
        self.rounds: list[float] = []  # steps where new strokes were taken in
        self.no_validation = False  # an epoch ended without a held-out score: too little was annotated
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(130)
        self.setToolTip(
            "Orange: training loss (left axis). Blue: Dice on held-out annotated pixels (right axis, 0 to 1).\n"
            "Dashed lines: training took in newly painted strokes."
        )

    def clear(self) -> None:
        self.loss.clear()
        self.dice.clear()
        self.rounds.clear()
        self.no_validation = False
        self.update()

    def add_loss(self, step: float, loss: float) -> None:
        if math.isfinite(loss):
            self.loss.append((step, loss))

    def add_dice(self, step: float, dice: float | None) -> None:
        """An epoch's held-out Dice; None means nothing could be held out (said on the plot, not an empty axis)."""
        if dice is not None and math.isfinite(dice):
            self.dice.append((step, dice))
        elif dice is None and not self.dice:
            self.no_validation = True

    def add_round(self, step: float) -> None:
        self.rounds.append(step)

    def set_no_validation_tip(self) -> None:
        """The tooltip says why there is no blue curve, once that is known."""
        if self.no_validation and not self.dice and NO_VALIDATION_TIP not in self.toolTip():
            self.setToolTip(self.toolTip() + "\n" + NO_VALIDATION_TIP)

    # ------------------------------------------------------------------------------------------ painting

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fg = pal.color(pal.ColorRole.WindowText)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        fm = p.fontMetrics()
        left, right, top, bottom = fm.horizontalAdvance("0.000") + 8, fm.horizontalAdvance("1.0") + 10, 16, 18
        area = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        grid = QColor(fg)
        grid.setAlpha(60)
        p.setPen(QPen(grid, 1))
        p.drawRect(area)

        p.setPen(LOSS_COLOR)
        p.drawText(QPointF(left, top - 4), "loss")
        p.setPen(DICE_COLOR)
        label = NO_VALIDATION if self.no_validation and not self.dice else "val Dice"
        p.drawText(QPointF(area.right() - fm.horizontalAdvance(label), top - 4), label)
        if not self.loss:
            p.setPen(fg)
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "curves appear while training")
            p.end()
            return

        x_max = max(self.loss[-1][0], self.dice[-1][0] if self.dice else 0, 1)
        x_min = self.loss[0][0]
        span = max(x_max - x_min, 1)
        values = [v for _, v in self.loss]
        lo, hi = 0.0, max(values) * 1.05 or 1.0

        def px(step: float) -> float:
            return area.left() + (step - x_min) / span * area.width()

        def py(v: float, v_lo: float, v_hi: float) -> float:
            return area.bottom() - (v - v_lo) / (v_hi - v_lo) * area.height()

        # round markers
        pen = QPen(grid, 1, Qt.PenStyle.DashLine)
        p.setPen(pen)
        for s in self.rounds:
            p.drawLine(QPointF(px(s), area.top()), QPointF(px(s), area.bottom()))

        # loss, smoothed by a short running mean so a noisy batch does not dominate
        p.setPen(QPen(LOSS_COLOR, 1.5))
        path = QPainterPath()
        k = max(1, len(self.loss) // 100)
        smoothed = _running_mean(self.loss, k)
        for i, (s, v) in enumerate(smoothed):
            pt = QPointF(px(s), py(v, lo, hi))
            path.moveTo(pt) if i == 0 else path.lineTo(pt)
        p.drawPath(path)

        if self.dice:
            p.setPen(QPen(DICE_COLOR, 1.5))
            path = QPainterPath()
            for i, (s, v) in enumerate(self.dice):
                pt = QPointF(px(s), py(v, 0.0, 1.0))
                path.moveTo(pt) if i == 0 else path.lineTo(pt)
                p.drawEllipse(pt, 2, 2)
            p.drawPath(path)

        # axis labels
        p.setPen(LOSS_COLOR)
        p.drawText(QRectF(0, area.top() - 6, left - 4, 12), Qt.AlignmentFlag.AlignRight, f"{hi:.2f}")
        p.drawText(QRectF(0, area.bottom() - 6, left - 4, 12), Qt.AlignmentFlag.AlignRight, "0")
        p.setPen(DICE_COLOR)
        p.drawText(QRectF(area.right() + 3, area.top() - 6, right, 12), Qt.AlignmentFlag.AlignLeft, "1")
        p.drawText(QRectF(area.right() + 3, area.bottom() - 6, right, 12), Qt.AlignmentFlag.AlignLeft, "0")
        p.setPen(fg)
        p.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), bottom),
            Qt.AlignmentFlag.AlignHCenter,
            f"step {int(x_max)}",
        )
        p.end()


def _running_mean(points: list[tuple[float, float]], k: int) -> list[tuple[float, float]]:
    if k <= 1:
        return points
    out = []
    for i in range(0, len(points), k):
        chunk = points[i : i + k]
        out.append((chunk[-1][0], sum(v for _, v in chunk) / len(chunk)))
    return out
