"""Which uncertainty map predicts the model's mistakes: ROC AUC of each candidate for the wrong pixels.

DSB2018 nuclei (the bundled 512 x 512 sample). For each split a U-Net is trained on scribbles drawn from the
training half's ground truth (``strokes.scribbles_from_truth``, 0.1% of the pixels) for a fixed number of
epochs, then predicts the unseen half; each candidate map is scored by ROC AUC (``sklearn.metrics``) for the
pixels the prediction gets wrong (foreground vs ground truth):

- entropy: normalized entropy of the class probabilities of one pass;
- margin: 1 - (top probability - second) of one pass;
- tta: entropy of the probabilities averaged over the 8 flips and 90-degree rotations (``uncertainty.TTA``);
- tta_std: the spread (2 x standard deviation) of the foreground probability over those 8 passes;
- entropy_blur: entropy smoothed as ``uncertainty.SMOOTH`` (the live preview's map, ``jobs/previews.py``);
- forest: disagreement of the U-Net with the pseudo-labelling forest (|p_unet - p_forest|).

    python benchmarks/uncertainty_auc.py            # both splits, 10 epochs of 20 steps
    python benchmarks/uncertainty_auc.py --quick    # one split, 3 epochs

One run (both splits, 200 steps, bf16, one thread on a busy 2-core AMD EPYC, load average 5): train left / right

    entropy 0.842 / 0.861, margin 0.842 / 0.861, tta 0.869 / 0.891, tta_std 0.886 / 0.904, forest 0.660 / 0.822,
    tta_mix 0.872 / 0.894, tta_blur 0.936 / 0.933   -> uncertainty.py: tta smoothed by a 1 px Gaussian
    entropy_blur 0.927 / 0.923 (the same run's other figures identical; load average 2.3) -> the live preview's
"""

from __future__ import annotations

import argparse

import numpy as np
from predict_speed import machine


def forest_probability(train_img, strokes, *images, seed: int = 0) -> list[np.ndarray]:
    """The pseudo-labelling forest (``training/pseudo.py``: its pixel features, its forest settings) fit on the
    strokes of ``train_img`` (1 = background, 2 = foreground): its foreground probability on each image."""
    from sklearn.ensemble import RandomForestClassifier

    from napari_unet.normalization import normalize
    from napari_unet.training.pseudo import pixel_features

    def feats(img):
        return pixel_features(normalize(np.asarray(img, np.float32)[None]))

    f = feats(train_img)
    annotated = strokes > 0
    clf = RandomForestClassifier(n_estimators=50, max_depth=10, n_jobs=-1, random_state=seed, class_weight="balanced")
    clf.fit(f[annotated], strokes[annotated])
    out = []
    for img in images:
        g = feats(img)
        proba = clf.predict_proba(g.reshape(-1, g.shape[-1]))[:, list(clf.classes_).index(2)]
        out.append(proba.reshape(np.shape(img)).astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", nargs="+", default=["left", "right"], help="training halves")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of 20 steps (default 10)")
    parser.add_argument("--quick", action="store_true", help="one split, 3 epochs: checks that it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.splits, args.epochs = args.splits[:1], 3

    import torch
    from scipy.ndimage import gaussian_filter
    from sklearn.metrics import roc_auc_score

    from napari_unet import train
    from napari_unet.normalization import normalize
    from napari_unet.prediction import predict_proba_plane
    from napari_unet.runtime import pick_device, pick_precision
    from napari_unet.sample_data import nuclei, nuclei_labels
    from napari_unet.strokes import scribbles_from_truth
    from napari_unet.uncertainty import TTA, entropy, margin

    torch.set_num_threads(1)
    image, truth = nuclei(), nuclei_labels()
    w = truth.shape[1]
    halves = {"left": np.s_[:, : w // 2], "right": np.s_[:, w // 2 :]}
    dev = pick_device("auto")
    print(f"machine: {machine()}; precision {pick_precision(dev, 'auto')}; epochs {args.epochs} x 20 steps")
    for split in args.splits:
        test = "right" if split == "left" else "left"
        strokes = scribbles_from_truth(truth[halves[split]], max_fraction=0.001, seed=0)
        model = train(image[halves[split]], strokes, time_limit=None, epochs=args.epochs, seed=0)
        test_img, test_truth = image[halves[test]], truth[halves[test]] > 0
        plane = normalize(test_img[None].astype(np.float32), model.meta.get("normalization"))
        one = predict_proba_plane(model, plane)
        passes = []
        for k, flip in TTA:
            view = np.ascontiguousarray(np.rot90(plane[..., ::-1] if flip else plane, k, axes=(-2, -1)))
            back = np.rot90(predict_proba_plane(model, view), -k, axes=(-2, -1))
            passes.append(back[..., ::-1] if flip else back)
        passes = np.stack(passes)
        mean = passes.mean(0)
        fg = (lambda p: p[0]) if one.shape[0] == 1 else (lambda p: 1 - p[0])
        wrong = (fg(one) > 0.5) != test_truth
        maps = {
            "entropy": entropy(one),
            "margin": margin(one),
            "tta": entropy(mean),
            "tta_std": 2 * passes[:, -1].std(0) if one.shape[0] == 1 else 2 * (1 - passes[:, 0]).std(0),
            "forest": np.abs(fg(one) - forest_probability(image[halves[split]], strokes, test_img)[0]),
        }
        maps["tta_mix"] = 0.5 * (maps["tta"] + np.clip(maps["tta_std"], 0, 1))
        maps["tta_blur"] = gaussian_filter(maps["tta"], 1.0)
        maps["entropy_blur"] = gaussian_filter(maps["entropy"], 1.0)  # the Train dock's live preview map
        wrong_tta = (fg(mean) > 0.5) != test_truth
        print(f"train {split}: {wrong.mean():.3%} of the unseen half wrong (TTA-averaged: {wrong_tta.mean():.3%})")
        for name, m in maps.items():
            auc = roc_auc_score(wrong.ravel(), m.ravel())
            own = f"  (for the TTA-averaged prediction's: {roc_auc_score(wrong_tta.ravel(), m.ravel()):.3f})"
            print(f"  {name:>8}: ROC AUC {auc:.3f}{own if name.startswith('tta') else ''}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
