"""The first run with nothing to prepare: train on the left half of the bundled nuclei image, predict and score the
right half, and write the model, labels, contours, metrics and an overlay.

Torch-free to import; the work loads torch. ``run_demo`` takes the training loop as an argument, so a caller
shows progress its own way (the CLI: a progress bar and Ctrl-C to stop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .training.config import DEFAULT_IOU_THRESHOLD, DEMO_TIME_LIMIT, default

if TYPE_CHECKING:
    from .model import UNet
    from .training import Done, Trainer


# everything the demo writes into its output folder
OUTPUTS = (
    "model.pt",
    "nuclei_right_labels.tif",
    "nuclei_right_contours.geojson",
    "nuclei_right_contours.csv",
    "metrics.csv",
    "overlay.png",
)


@dataclass
class DemoResult:
    """What the demo found: the training's end, the scores of the right half, where the files went."""

    done: Done = field(repr=False)
    rows: list[dict]  # the metrics table (``metrics.evaluate``)
    objects: dict  # object matching of the instances (``metrics.instance_scores``)
    predict_seconds: float
    folder: Path

    @property
    def model(self) -> UNet:
        return self.done.model

    def report(self) -> str:
        """The results as printed: the table, the objects line, the files written."""
        from .metrics import format_table

        obj = self.objects
        return "\n".join(
            [
                format_table(self.rows),
                f"objects: {obj['n_pred']} found, {obj['n_true']} true, {obj['matched']} matched at IoU >= "
                f"{DEFAULT_IOU_THRESHOLD:g} "
                f"(F1 {obj['f1']:.3f}, mean IoU {obj['mean_matched_iou']:.3f}, PQ {obj['pq']:.3f}); "
                f"prediction took {self.predict_seconds:.2f} s",
                f"wrote {self.folder}/: model.pt, nuclei_right_labels.tif, contours (.geojson, .csv), metrics.csv, "
                "overlay.png (green: prediction, magenta: truth)",
            ]
        )


def _drain(trainer: Trainer) -> Done:
    """Train without showing progress: the last event is ``Done``."""
    from .training import Done

    return next(e for e in trainer.run() if isinstance(e, Done))


def run_demo(
    folder: str | Path,
    *,
    time_limit: float = DEMO_TIME_LIMIT,
    mode: str = "sparse",
    seed: int = default("seed"),
    device: str = "auto",
    precision: str = "auto",
    run_training: Callable[[Trainer], Done] = _drain,
    notify: Callable[[str], object] = lambda message: None,
) -> DemoResult:
    """Train on the left half of the bundled nuclei image, predict and score the right half,
    and write ``OUTPUTS`` into ``folder`` (created if needed; files of an earlier demo are replaced).

    ``mode``: 'sparse' trains on scribbles drawn from the ground truth (0.2% of the pixels), 'dense' on the
    complete masks. ``run_training`` iterates the trainer to its ``Done``; ``notify`` gets the progress notes (what is trained on,
    how training went, a warning when the model is not to be trusted yet).
    """
    from .io import check_writable
    from .metrics import evaluate, instance_scores
    from .prediction import predict
    from .sample_data import nuclei, nuclei_labels
    from .strokes import scribbles_from_truth
    from .training import Trainer, trust_warning
    from .training.events import PLATEAU

    if mode not in ("sparse", "dense"):
        raise InputError(f"mode must be 'sparse' (scribbles) or 'dense' (complete masks), got {mode!r}.")
    outdir = check_writable(folder)
    image, truth = nuclei(), nuclei_labels()
    half = image.shape[1] // 2
    strokes = mode == "sparse"
    # scribbles drawn on the training half only, so that half gets the whole 0.2% budget
    train_labels = scribbles_from_truth(truth[:, :half], seed=seed) if strokes else truth[:, :half]
    kind = f"scribbles on {np.count_nonzero(train_labels)} pixels" if strokes else "complete masks"
    notify(f"demo: DSB2018 nuclei {image.shape}; training at most {time_limit:.0f} s on the left half ({kind})")
    trainer = Trainer(
        image[:, :half],
        train_labels,
        time_limit=time_limit,
        seed=seed,
        device=device,
        precision=precision,
        mode=mode,
    )
    done = run_training(trainer)
    why = ", then it stopped improving" if done.reason == PLATEAU else ""
    notify(f"trained {done.steps} steps in {done.elapsed:.0f} s{why}")
    if done.threads and trainer.device.type == "cpu":
        notify(f"CPU threads: {done.threads}")
    if not done.usable:
        notify(f"Warning: a {done.verdict} model: {done.verdict_reason}")
    warning = trust_warning(done)
    if warning:
        notify(warning)
    t0 = time.perf_counter()
    test_img, test_truth = image[:, half:], truth[:, half:]
    inst = predict(done.model, test_img, instances=True, device=device, precision=precision)
    seconds = time.perf_counter() - t0
    rows = evaluate([inst], [test_truth], ["nuclei right half"])
    result = DemoResult(done, rows, instance_scores(inst, test_truth), seconds, outdir)
    _write_outputs(result, inst, test_img, test_truth)
    return result


def _write_outputs(result: DemoResult, inst: np.ndarray, image: np.ndarray, truth: np.ndarray) -> None:
    """``OUTPUTS``: model, labels, contours, metrics, overlay (the model, labels and contours written atomically)."""
    from skimage.io import imsave
    from skimage.segmentation import mark_boundaries

    from .checkpoint import save_model
    from .contours import label_contours, write_contours
    from .io import write_labels
    from .metrics import write_table_csv
    from .normalization import normalize

    outdir = result.folder
    save_model(result.model, outdir / "model.pt", overwrite=True)
    write_labels(outdir / "nuclei_right_labels.tif", inst, overwrite=True)
    contours = label_contours(inst)
    write_contours(contours, outdir / "nuclei_right_contours.geojson")
    write_contours(contours, outdir / "nuclei_right_contours.csv")
    write_table_csv(result.rows, outdir / "metrics.csv")
    gray = np.clip(normalize(image[None].astype(np.float32))[0], 0, 1)
    overlay = mark_boundaries(np.dstack([gray] * 3), truth, color=(1, 0, 1))
    overlay = mark_boundaries(overlay, inst, color=(0, 1, 0))
    imsave(outdir / "overlay.png", (overlay * 255).astype(np.uint8), check_contrast=False)
