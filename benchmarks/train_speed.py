"""Training throughput of the Trainer vs the bare network's forward + backward step on the same CPU.

On the DSB2018 nuclei image with scribbles (the bundled sample), with the default TrainConfig (batch 8,
128 x 128 patches, augmentation with elastic deformation on), in one process, interleaved, best of
``--repeats`` blocks of ``--steps`` steps:

- bare step: forward + loss + backward + Adam step of the same model on one fixed, already augmented batch
  (channels_last, bf16 autocast where the CPU has it): the limit;
- data: patch sampling + augmentation of one batch alone;
- Trainer.train_step(): sampling, augmentation, transfer and the step, as training runs it.

Throughput is patch pixels per second (batch x patch x patch per step), and annotated patch pixels per
second for the trainer. Target: trainer >= 0.8x the bare step.

    python benchmarks/train_speed.py
    python benchmarks/train_speed.py --steps 5 --repeats 5 --set batch_size=16
    python benchmarks/train_speed.py --sweep    # patch pixels/s of batch x patch shapes and memory formats
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, e.g. batch_size=16")
    ap.add_argument("--sweep", action="store_true", help="time bare steps over batch/patch shapes and memory formats")
    args = ap.parse_args(argv)
    if args.sweep:
        return sweep(args.repeats)
    from predict_speed import machine, parse_overrides

    overrides = parse_overrides(args.set)

    from napari_unet import Trainer
    from napari_unet.runtime import autocast
    from napari_unet.sample_data import nuclei, nuclei_strokes
    from napari_unet.training.losses import segmentation_loss

    trainer = Trainer(nuclei(), nuclei_strokes(), time_limit=3600, seed=0, **overrides)
    cfg = trainer.config
    print(f"machine: {machine()}")
    print(
        f"DSB2018 + scribbles, batch {cfg.batch_size} x {cfg.patch_size}^2, augment {cfg.augment} "
        f"(elastic p={cfg.elastic}), {trainer.device} {trainer.precision}"
    )
    model, opt = trainer.model, trainer.optimizer
    x, y = trainer.sampler.batch(cfg.batch_size)
    if trainer.augment is not None:
        x, y = trainer.augment(x, y, trainer.generator)
    x = x.to(trainer.device, memory_format=torch.channels_last)
    y = y.clamp(min=-1, max=trainer.n_classes).to(trainer.device)  # plain targets: no pseudo-labels
    annotated = []

    def bare():
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast(trainer.device, trainer.precision):
            logits = model(x)
        loss = segmentation_loss(logits, y, trainer.class_balance, cfg.dice_weight)
        loss.backward()
        opt.step()

    def data():
        xb, yb = trainer.sampler.batch(cfg.batch_size)
        if trainer.augment is not None:
            xb, yb = trainer.augment(xb, yb, trainer.generator)
        annotated.append(int((yb >= 0).sum()))

    def step():
        trainer.train_step(0.5)

    runs = {"bare forward+backward+Adam step": bare, "data only (sample + augment)": data, "Trainer.train_step": step}
    for fn in runs.values():  # warm-up: oneDNN builds its kernels on first use
        fn()
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t) / args.steps)
    px = cfg.batch_size * cfg.patch_size**2
    best = {k: min(v) for k, v in times.items()}
    print(f"\n{'':36s} {'ms/step':>8s} {'Mpx/s':>7s}")
    for name, s in best.items():
        print(f"{name:36s} {1000 * s:8.1f} {px / s / 1e6:7.3f}")
    ratio = best["bare forward+backward+Adam step"] / best["Trainer.train_step"]
    frac = sum(annotated) / len(annotated) / px
    print(
        f"\ntrainer vs bare step: {ratio:.2f}x (target >= 0.8); data pipeline = "
        f"{best['data only (sample + augment)'] / best['Trainer.train_step']:.0%} of a step; "
        f"annotated pixels: {frac:.1%} of patch pixels -> {frac * px / best['Trainer.train_step'] / 1e6:.3f} "
        "annotated Mpx/s"
    )


def sweep(repeats: int) -> None:
    """Bare forward + backward + Adam steps of the default U-Net (16 filters, depth 4) over batch x patch shapes
    (about the same pixels per step) and memory formats, interleaved, best of ``repeats``: which shape and
    format train fastest per pixel on this CPU, in its automatic precision."""
    from predict_speed import machine

    from napari_unet.model import UNet
    from napari_unet.runtime import autocast, pick_device, pick_precision
    from napari_unet.training.losses import segmentation_loss

    dev = pick_device("auto")
    prec = pick_precision(dev)
    print(f"machine: {machine()}; {dev} {prec}")
    shapes = [(8, 128), (4, 128), (16, 96), (4, 192), (2, 256), (16, 64), (32, 48)]
    runs = {}
    for (b, p), fmt in [(s, f) for s in shapes for f in ("channels_last", "NCHW")]:
        torch.manual_seed(0)
        memory = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        model = UNet(1, 1, 16, 4).to(dev, memory_format=memory)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(b, 1, p, p, device=dev).contiguous(memory_format=memory)
        y = (torch.rand(b, p, p, device=dev) > 0.5).long()

        def step(model=model, opt=opt, x=x, y=y):
            opt.zero_grad(set_to_none=True)
            with autocast(dev, prec):
                logits = model(x)
            segmentation_loss(logits, y, False, 1.0).backward()
            opt.step()

        runs[(b, p, fmt)] = step
    for fn in runs.values():
        fn()
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            fn()
            best[k] = min(best[k], (time.perf_counter() - t) / 2)
    print(f"\n{'batch x patch':>14s} {'format':>14s} {'ms/step':>8s} {'Mpx/s':>7s}")
    for (b, p, fmt), s in sorted(best.items(), key=lambda kv: -kv[0][0] * kv[0][1] ** 2 / kv[1]):
        print(f"{f'{b} x {p}^2':>14s} {fmt:>14s} {1000 * s:8.0f} {b * p * p / s / 1e6:7.3f}")


if __name__ == "__main__":
    main()
