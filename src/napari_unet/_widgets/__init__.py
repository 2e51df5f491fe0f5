"""napari dock widgets: thin Qt front ends over the Qt-free core (``napari_unet``).

- ``TrainWidget``: pick images and annotations, train (with a live preview), stop, save and load models.
- ``PredictWidget``: segment chosen or all opened images into new Labels layers, with contours and polygons.
- ``MetricsWidget``: Dice / IoU / precision / recall of predictions against ground-truth layers.

Importing this package does not import torch; the core is imported when a widget is used.
"""

__all__ = ["MetricsWidget", "PredictWidget", "TrainWidget"]

_MODULES = {"MetricsWidget": "._metrics", "PredictWidget": "._predict", "TrainWidget": "._train"}


def __getattr__(name: str):
    if name in _MODULES:
        from importlib import import_module

        return getattr(import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
