"""napari-unet: paint a few labels, train a U-Net, segment everything you opened.

The core (this package minus ``_widgets``) never imports Qt or napari, so it runs headless and from scripts.
The public names load their modules on first use (PEP 562), so napari can list the plugin's widgets
without paying for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__  # noqa: F401  (napari_unet.__version__)

_EXPORTS = {
    "Annotation": "annotation",
    "load_model": "checkpoint",
    "save_model": "checkpoint",
    "label_contours": "contours",
    "write_contours": "contours",
    "InputError": "errors",
    "export_model": "export",
    "read_image": "io",
    "write_labels": "io",
    "evaluate": "metrics",
    "format_table": "metrics",
    "instance_scores": "metrics",
    "object_scores": "metrics",
    "UNet": "model",
    "predict_dask": "distributed",
    "count_parameters": "model",
    "iter_predict": "prediction",
    "predict": "prediction",
    "predict_proba": "prediction",
    "Done": "training",
    "Epoch": "training",
    "Step": "training",
    "TrainConfig": "training",
    "Trainer": "training",
    "train": "training",
    "predict_uncertainty": "uncertainty",
    "uncertainty_map": "uncertainty",
    "unsure_regions": "uncertainty",
}

__all__ = [
    "Annotation",
    "Done",
    "Epoch",
    "InputError",
    "Step",
    "TrainConfig",
    "Trainer",
    "UNet",
    "count_parameters",
    "evaluate",
    "export_model",
    "format_table",
    "instance_scores",
    "iter_predict",
    "label_contours",
    "load_model",
    "object_scores",
    "predict",
    "predict_dask",
    "predict_proba",
    "predict_uncertainty",
    "read_image",
    "save_model",
    "train",
    "uncertainty_map",
    "unsure_regions",
    "write_contours",
    "write_labels",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .annotation import Annotation
    from .checkpoint import load_model, save_model
    from .contours import label_contours, write_contours
    from .distributed import predict_dask
    from .errors import InputError
    from .export import export_model
    from .io import read_image, write_labels
    from .metrics import evaluate, format_table, instance_scores, object_scores
    from .model import UNet, count_parameters
    from .prediction import iter_predict, predict, predict_proba
    from .training import Done, Epoch, Step, TrainConfig, Trainer, train
    from .uncertainty import predict_uncertainty, uncertainty_map, unsure_regions
