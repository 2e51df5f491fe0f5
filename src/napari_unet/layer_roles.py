"""How the plugin marks napari layers: the ``layer.metadata`` keys it writes and reads, and the layers' roles.

Plain strings and dict lookups, no napari import: the docks and the core's sample data share them. napari
saves layer metadata with a project, so a reopened session still knows which layers are the plugin's.
"""

from __future__ import annotations

#: key in ``layer.metadata`` that marks layers this plugin added, with their role
ROLE_KEY = "napari_unet_role"
PREVIEW, PREDICTION, SCRIBBLES, POLYGONS = "preview", "prediction", "scribbles", "polygons"
#: role of the per-pixel uncertainty (an Image layer) of a prediction: where to paint next
UNCERTAINTY = "uncertainty"
#: role of an editable copy of a prediction: complete masks where reviewed, trained on as such
CORRECTIONS = "corrections"
#: role of a layer opened as ground truth (sample data, or a user's own tag): never trained on unasked
TRUTH = "truth"
#: roles of the layers the plugin writes its results into (never training inputs)
OUTPUT_ROLES = (PREVIEW, PREDICTION, POLYGONS, UNCERTAINTY)
#: name of the image a prediction (or its polygons) was made from: pairs it with that image's ground truth
SOURCE_KEY = "napari_unet_source"
#: False while the Predict job still writes the layer's planes, True once the image is done
COMPLETE_KEY = "napari_unet_complete"
#: True for a prediction made with 'Split touching objects': instance ids by construction
INSTANCES_KEY = "napari_unet_instances"
#: the number of objects in a finished prediction
OBJECTS_KEY = "napari_unet_objects"
#: a correction layer's starting point (the prediction's labels): what differs from it was edited
ORIGINAL_KEY = "napari_unet_original"
#: a correction layer's pixels marked reviewed by hand (bool array, 'Mark plane reviewed')
MARKED_KEY = "napari_unet_marked"
#: a token unique to each prediction layer: a layer that carries another's token is napari's Duplicate of it
TOKEN_KEY = "napari_unet_token"


def role(layer) -> str | None:
    """What this plugin added the layer for (``PREVIEW``, ``PREDICTION``, ...), or None for a user's layer."""
    return layer.metadata.get(ROLE_KEY) if hasattr(layer, "metadata") else None


def is_complete(layer) -> bool:
    """False for a prediction the Predict job is still writing (or left incomplete); True for any other layer."""
    return bool(layer.metadata.get(COMPLETE_KEY, True))


def predicted_instances(layer) -> bool:
    """A layer predicted with 'Split touching objects' (instance ids by construction)."""
    return bool(layer.metadata.get(INSTANCES_KEY))
