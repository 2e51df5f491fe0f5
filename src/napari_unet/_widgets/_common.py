"""Small helpers shared by the dock widgets: finding and pairing layers, messages, Qt wrapping, throttling."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, EmptyWidget, Label
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import InputError
from ..layer_roles import CORRECTIONS, PREDICTION, PREVIEW, SCRIBBLES, SOURCE_KEY, role

if TYPE_CHECKING:
    import napari
    from qtpy.QtWidgets import QWidget

log = logging.getLogger("napari_unet")

# ---------------------------------------------------------------------------------------------- messages


def report_error(message: str) -> None:
    """A red notification with the message and no traceback."""
    show_error(message)


def report_warning(message: str) -> None:
    show_warning(message)


def report_info(message: str) -> None:
    show_info(message)


_MESSAGE_COLORS = {"error": "#ff6b6b", "warning": "#ffb000", "info": "#9fd89f"}


def report(line, kind: str, message: str) -> None:
    """A notification (short-lived, maybe truncated) and, whole, in the widget's message line until the next."""
    {"error": report_error, "warning": report_warning, "info": report_info}[kind](message)
    if line is not None and is_alive(line.native):
        import html

        color = _MESSAGE_COLORS.get(kind, "#cccccc")
        line.value = (
            f"<small><span style='color:{color}'><b>{kind.capitalize()}:</b></span> {html.escape(message)}</small>"
        )


def describe(exc: BaseException) -> str:
    """The user-facing text of an exception: the message of an ``InputError``, the type and message otherwise."""
    if isinstance(exc, InputError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def guarded(handler: Callable, line=None) -> Callable:
    """Run a GUI handler; an ``InputError`` (or any exception) becomes an error notification, not a traceback,
    and stays whole in ``line`` (the widget's message line) when given."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except InputError as e:
            report(line, "error", str(e))
        except Exception as e:  # a bug: still no traceback dialog, but log it for the bug report
            log.exception("napari-unet: unexpected error in %s", handler.__name__)
            report(line, "error", describe(e))
        return None

    return wrapper


# ---------------------------------------------------------------------------------------------- viewer and layers


def unwrap_viewer(viewer: napari.Viewer) -> napari.Viewer:
    """The real viewer behind napari's public-only proxy, so layers compare by identity."""
    return getattr(viewer, "__wrapped__", viewer)


def layer_array(layer):
    """The layer's full-resolution array (level 0 of a multiscale layer); not copied, may be lazy."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_spatial_shape(layer) -> tuple[int, ...]:
    """Shape of the layer's pixels without the channel axis of an RGB(A) image."""
    shape = tuple(layer_array(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def channel_axis(layer) -> int | None:
    """Channel axis of an image layer: the last one for RGB(A) layers, else none (one channel per layer)."""
    return -1 if getattr(layer, "rgb", False) else None


def image_layers(viewer: napari.Viewer) -> list:
    from napari.layers import Image

    return [lay for lay in viewer.layers if isinstance(lay, Image)]


def labels_layers(viewer: napari.Viewer, include_plugin: bool = True) -> list:
    from napari.layers import Labels

    return [
        lay
        for lay in viewer.layers
        if isinstance(lay, Labels) and (include_plugin or role(lay) not in (PREVIEW, PREDICTION))
    ]


def unique_name(viewer: napari.Viewer, base: str) -> str:
    names = {lay.name for lay in viewer.layers}
    if base not in names:
        return base
    k = 2
    while f"{base} [{k}]" in names:
        k += 1
    return f"{base} [{k}]"


_ANNOTATION_HINT = re.compile(r"stroke|scribble|annot|brush|paint|train|sparse", re.I)
#: a name that says "evaluation truth" (never trained on unasked); with "mask": a name a truth layer may have
TRUTH_NAME = re.compile(r"truth|\bgt\b|_gt|gt_|ground|reference", re.I)
_TRUTH_HINT = re.compile(TRUTH_NAME.pattern + "|mask", re.I)


def _stem(name: str) -> str:
    """A layer name without the words that say what kind of layer it is: 'nuclei strokes' -> 'nuclei'."""
    words = re.split(r"[\s_\-\.]+", name.lower())
    drop = {"strokes", "stroke", "scribbles", "scribble", "labels", "label", "annotations", "annotation", "ground"}
    drop |= {"truth", "gt", "mask", "masks", "prediction", "preview", "pred", "seg", "segmentation", "unet", "u-net"}
    return " ".join(w for w in words if w and w not in drop and not re.fullmatch(r"\[\d+\]", w))


def best_annotation_layer(image, candidates: Iterable, selected: Iterable = ()):
    """The Labels layer most likely to hold the annotations of ``image``, or None.

    Only layers of the image's spatial shape count, never layers this plugin predicted. Among several,
    prefer a selected one, then a correction of a prediction, then names that say "strokes" / "scribbles" / "annotations" over names that say
    "ground truth", then names that share the image's name, then the most recently added.
    """
    shape = layer_spatial_shape(image)
    pool = [lay for lay in candidates if tuple(lay.data.shape) == shape and role(lay) not in (PREVIEW, PREDICTION)]
    if not pool:
        return None
    selected = set(map(id, selected))

    def score(item: tuple[int, Any]) -> tuple:
        order, lay = item
        name = lay.name
        return (
            id(lay) in selected,
            role(lay) == CORRECTIONS,  # made from a prediction of this image to train on: the newest intent
            role(lay) in (SCRIBBLES, CORRECTIONS) or bool(_ANNOTATION_HINT.search(name)),
            not _TRUTH_HINT.search(name),
            _stem(name) == _stem(image.name),
            order,
        )

    return max(enumerate(pool), key=score)[1]


def best_truth_layer(prediction, candidates: Iterable):
    """The ground-truth Labels layer for a prediction layer: same shape, not a plugin layer, matched by name."""
    shape = tuple(prediction.data.shape)
    pool = [
        lay
        for lay in candidates
        if lay is not prediction
        and tuple(lay.data.shape) == shape
        and role(lay) not in (PREVIEW, PREDICTION, SCRIBBLES)
    ]
    if not pool:
        return None
    source = prediction.metadata.get(SOURCE_KEY, prediction.name)

    def score(item: tuple[int, Any]) -> tuple:
        order, lay = item
        return (
            bool(_TRUTH_HINT.search(lay.name)),
            _stem(lay.name) == _stem(source),
            not _ANNOTATION_HINT.search(lay.name),
            order,
        )

    return max(enumerate(pool), key=score)[1]


# ---------------------------------------------------------------------------------------------- Qt helpers


def wrap_qt(qwidget: QWidget, name: str = "") -> EmptyWidget:
    """A magicgui widget holding a plain Qt widget, so it can sit in a ``Container``."""
    holder = EmptyWidget(name=name, label="")
    layout = holder.native.layout()
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(qwidget)
    return holder


def scrolling_body(container: Container) -> Container:
    """A sub-container inside a scroll area that fills ``container``: the dock scrolls rather than asking for a
    window taller than the screen (napari docks a magicgui widget's ``native``, so ``scrollable=`` is lost)."""
    from qtpy.QtCore import QSize, Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy

    class _Scroll(QScrollArea):
        """As wide as its content needs and as tall as it likes when there is room; scrolls when there is not."""

        def _extra(self) -> int:
            return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

        def sizeHint(self) -> QSize:  # noqa: N802  (Qt)
            inner = self.widget().sizeHint() if self.widget() is not None else QSize(0, 0)
            return QSize(inner.width() + self._extra(), inner.height() + 2 * self.frameWidth())

        def minimumSizeHint(self) -> QSize:  # noqa: N802  (Qt)
            inner = self.widget().minimumSizeHint() if self.widget() is not None else QSize(0, 0)
            return QSize(inner.width() + self._extra(), min(inner.height(), 200))

    body = Container(labels=False)
    body.margins = (0, 0, 0, 0)
    scroll = _Scroll()
    scroll.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(body.native)
    container.margins = (0, 0, 0, 0)
    holder = wrap_qt(scroll)
    holder.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    container.append(holder)
    return body


DOCK_PROPERTY = "napari_unet_dock"


def tabify_later(widget) -> None:
    """Once napari has docked ``widget``, make it a tab beside the other napari-unet docks of its area.

    Three docks stacked in one column asked for a 1,600 px tall window; as tabs they take the height of one,
    and each dock scrolls instead of growing when it is taller than the screen.
    """
    from qtpy.QtCore import QTimer

    widget.native.setProperty(DOCK_PROPERTY, True)
    QTimer.singleShot(0, lambda: _tabify(widget.native))


def _tabify(native) -> None:
    from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

    if not is_alive(native):
        return
    dock = native.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    main = dock.parentWidget() if dock is not None else None
    if not isinstance(main, QMainWindow):
        return
    area = main.dockWidgetArea(dock)
    if main.tabifiedDockWidgets(dock):
        return  # already a tab (another napari-unet dock took it in)
    for other in main.findChildren(QDockWidget):
        if other is dock or other.isHidden() or main.dockWidgetArea(other) != area:
            continue
        inner = other.widget()
        if inner is not None and any(w.property(DOCK_PROPERTY) for w in [inner, *inner.findChildren(QWidget)]):
            main.tabifyDockWidget(other, dock)
            dock.show()
            dock.raise_()
            return


def is_alive(qwidget) -> bool:
    """False once Qt has deleted the C++ widget (e.g. the viewer was closed)."""
    try:
        qwidget.objectName()
    except RuntimeError:
        return False
    return True


def form(*widgets) -> Container:
    """A labelled sub-form (the dock widget itself has no label column)."""
    box = Container(widgets=list(widgets), labels=True)
    box.margins = (0, 0, 0, 0)
    return box


def wrapping_label() -> Label:
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def heading(text: str) -> Label:
    import html

    return Label(value=f"<b>{html.escape(text)}</b>")


class Throttle:
    """``ready()`` is True at most once per ``interval`` seconds: for UI updates fed by a fast worker."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -np.inf

    def ready(self, force: bool = False) -> bool:
        now = time.perf_counter()
        if force or now - self._last >= self.interval:
            self._last = now
            return True
        return False


def set_progress(bar, value: int | None = None, text: str | None = None) -> None:
    """Set a magicgui ``ProgressBar``'s value and text without the synchronous repaint ``QProgressBar.setValue``
    does (it repaints the whole window at once: ~20 ms under software OpenGL); the repaint is queued instead."""
    native = bar.native
    native.setUpdatesEnabled(False)
    try:
        if value is not None and value != bar.value:
            bar.value = value
        if text is not None and text != native.format():
            native.setFormat(text)
    finally:
        native.setUpdatesEnabled(True)
    native.update()


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min"
