"""napari dock widgets: thin Qt front ends over the Qt-free core (``napari_unet``).

- ``TrainWidget``: pick images and annotations, train (with a live preview), stop, save and load models.
- ``PredictWidget``: segment chosen or all opened images into new Labels layers, with contours and polygons.
- ``MetricsWidget``: Dice / IoU / precision / recall of predictions against ground-truth layers.

Importing this package does not import torch; the core is imported when a widget is used.
"""

from ._metrics import MetricsWidget
from ._predict import PredictWidget
from ._train import TrainWidget

__all__ = ["MetricsWidget", "PredictWidget", "TrainWidget"]
