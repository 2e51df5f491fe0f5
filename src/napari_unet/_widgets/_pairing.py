"""Which Labels layer holds the annotations of an image: the automatic choice, and the user's choices kept.

The Train widget rebuilds its image / annotation rows whenever layers are added, renamed or removed; this
module decides what each row shows. Rules:

- a layer that looks like evaluation truth (named "ground truth", "gt", "reference", or opened as truth:
  role ``TRUTH`` under ``ROLE_KEY``, see ``layer_roles``) is never picked automatically: training on it must be the
  user's choice;
- a choice the user made in a row is kept while its layer still fits the image; an automatic choice is
  made again at each change, so a Labels layer opened after its image (or after the widget) is paired.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import layer_roles as roles
from . import _common as c

# names of evaluation truth; not "mask": complete masks painted to train on are often called so


def looks_like_truth(layer) -> bool:
    """True for a layer that looks like the ground truth used to evaluate, not annotations to train on."""
    return roles.role(layer) == roles.TRUTH or bool(c.TRUTH_NAME.search(layer.name))


def auto_annotation_layer(image, candidates: Iterable, selected: Iterable = ()):
    """The annotation layer to pair with ``image`` without asking, or None; never a truth-like layer."""
    pool = [lay for lay in candidates if not looks_like_truth(lay)]
    return c.best_annotation_layer(image, pool, selected)


class PairingMemory:
    """The choices the user made, per image layer (by identity): (ticked, labels layer or None)."""

    def __init__(self) -> None:
        self._chosen: dict[int, tuple[bool, object]] = {}

    def remember(self, image, use: bool, labels) -> None:
        self._chosen[id(image)] = (bool(use), labels)

    def forget(self, layer) -> None:
        self._chosen.pop(id(layer), None)
        for key, (_use, labels) in list(self._chosen.items()):
            if labels is layer:
                del self._chosen[key]

    def choice(self, image, fitting: list, selected: Iterable = ()) -> tuple[bool, object]:
        """(ticked, labels layer) for a row: the user's choice if it still fits, else the automatic one."""
        if id(image) in self._chosen:
            use, labels = self._chosen[id(image)]
            if labels is None or any(labels is lay for lay in fitting):
                return use and labels is not None, labels
        auto = auto_annotation_layer(image, fitting, selected)
        return auto is not None, auto
