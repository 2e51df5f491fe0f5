"""napari-unet: paint a few labels, train a U-Net, segment everything you opened.

The core (this package minus ``_widgets``) never imports Qt or napari, so it runs headless and from scripts.
"""

__version__ = "0.1.0"

from .checkpoint import load_model, save_model
from .contours import label_contours, write_contours
from .errors import InputError
from .io import read_image, write_labels
from .metrics import evaluate, format_table, instance_scores
from .model import UNet, count_parameters
from .prediction import iter_predict, predict, predict_proba
from .training import Done, Epoch, Step, TrainConfig, Trainer, train

__all__ = [
    "Done",
    "Epoch",
    "InputError",
    "Step",
    "TrainConfig",
    "Trainer",
    "UNet",
    "count_parameters",
    "evaluate",
    "format_table",
    "instance_scores",
    "iter_predict",
    "label_contours",
    "load_model",
    "predict",
    "predict_proba",
    "read_image",
    "save_model",
    "train",
    "write_contours",
    "write_labels",
]
