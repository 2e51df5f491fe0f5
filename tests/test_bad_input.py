"""Issue 6: bad input gets a correct result or one clear message (what is wrong AND what to do); nothing is modified.

Complements the cases already in test_data, test_training, test_prediction, test_checkpoint, test_cli and test_io.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_unet import InputError, Trainer, iter_predict, load_model, predict, save_model, train
from napari_unet.cli import main
from napari_unet.cli.train import POOR_MODEL_EXIT
from napari_unet.images import check_image
from napari_unet.labels import integer_labels
from napari_unet.normalization import normalize

TINY = dict(filters=4, depth=2, patch_size=32, batch_size=2, epochs=1, steps_per_epoch=2, time_limit=None)
TINY_ARGS = ["--filters", "4", "--depth", "2", "--patch-size", "32", "--batch-size", "2", "--epochs", "1"]

# every message must also say what to do: one of these verbs (or "must be", which states the rule)
ADVICE = re.compile(
    r"\b(give|use|choose|pass|check|convert|rescale|re-export|export|train|relabel|lower|crop|create|annotate|"
    r"paint|save|rename|upgrade|must be|must cover|split|predict them)\b",
    re.I,
)


def assert_clear(message: str, *words: str) -> None:
    """One line, no traceback, names the problem (``words``) and says what to do."""
    assert "\n" not in message.strip() and "Traceback" not in message, message
    for w in words:
        assert w.lower() in message.lower(), (w, message)
    assert ADVICE.search(message), f"no advice in: {message}"


def raises_clear(fn, *words: str) -> str:
    with pytest.raises(InputError) as info:
        fn()
    assert_clear(str(info.value), *words)
    return str(info.value)


@pytest.fixture(scope="module")
def model(data):
    image, labels = data
    return train(image, labels, mode="dense", **TINY)


# ---------------------------------------------------------------------------------------------- training, Python API

BAD_TRAINING = {
    "labels as an RGB picture": (lambda im, lab: (im, np.dstack([lab] * 3)), ["RGB", "label ids"]),
    "huge uint64 label ids": (lambda im, lab: (im, lab.astype(np.uint64) * np.uint64(2**63)), ["huge"]),
    "huge float label values": (lambda im, lab: (im, lab * 1e30), ["huge"]),
    "complex labels": (lambda im, lab: (im, lab.astype(np.complex64)), ["dtype complex64"]),
    "text labels": (lambda im, lab: (im, lab.astype(str)), ["dtype <U"]),
    "labels missing": (lambda im, lab: (im, None), ["labels"]),
    "image missing": (lambda im, lab: (None, lab), ["missing"]),
    "complex image": (lambda im, lab: (im.astype(np.complex64), lab), ["complex"]),
    "object image": (lambda im, lab: (im.astype(object), lab), ["dtype object"]),
    "text image": (lambda im, lab: (im.astype(str), lab), ["text"]),
    "datetime image": (lambda im, lab: (np.zeros(im.shape, "datetime64[s]"), lab), ["dates"]),
    "empty image 0xN": (lambda im, lab: (im[:0], lab[:0]), ["empty"]),
    "1-D image": (lambda im, lab: (im[0], lab[0]), ["at least 2 dimensions"]),
    "all-NaN image": (lambda im, lab: (np.full_like(im, np.nan), lab), ["no finite pixel"]),
    "foreground only on NaN pixels": (
        lambda im, lab: (np.where(lab > 0, np.nan, im), lab),
        ["Only background", "NaN or inf"],
    ),
    "float64 beyond float32": (lambda im, lab: (im.astype(np.float64) * 1e300, lab), ["float32 range"]),
    "multiclass ids above 32": (lambda im, lab: (im, lab * 40), ["more than 32 classes"]),
    "2- and 3-channel images mixed": (
        lambda im, lab: ([np.dstack([im] * 2), np.dstack([im] * 3)], [lab, lab]),
        ["channels"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_TRAINING))
def test_bad_training_input_is_one_clear_error_and_nothing_is_modified(data, case):
    make, words = BAD_TRAINING[case]
    image, labels = make(*data)
    before = [np.array(a, copy=True) for a in (image if isinstance(image, list) else [image]) if a is not None]
    kwargs = dict(TINY, mode="dense", multiclass=case == "multiclass ids above 32")
    raises_clear(lambda: Trainer(image, labels, **kwargs), *words)
    after = [a for a in (image if isinstance(image, list) else [image]) if a is not None]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b, a)  # the caller's arrays are untouched (NaN == NaN here)


@pytest.mark.parametrize(
    "kwargs,words", [({"channel_axis": 5}, ["out of range"]), ({"channel_axis": "x"}, ["channel_axis"])]
)
def test_bad_channel_axis_for_training(data, kwargs, words):
    image, labels = data
    raises_clear(lambda: Trainer(image, labels, **TINY, **kwargs), *words)


def test_rgb_image_on_a_grayscale_model(data, model):
    image, labels = data
    rgb = np.dstack([image] * 3)
    raises_clear(lambda: Trainer(rgb, labels, model=model, **TINY), "multi-channel", "1-channel")
    raises_clear(lambda: predict(model, rgb), "multi-channel", "grayscale")


def test_nan_pixels_are_ignored_in_training_and_labelled_0(data, model):
    image, labels = data
    holed = image.copy()
    holed[:5] = np.nan
    holed[10, 10] = np.inf
    trainer = Trainer(holed, labels, mode="dense", **TINY)
    assert trainer.n_annotated == labels.size - 5 * 48 - 1
    out = predict(model, np.where(labels > 0, np.nan, image))
    assert out.shape == labels.shape and not out[labels > 0].any()


def test_constant_tiny_and_bool_images_train_and_predict(data):
    image, labels = data
    for img, lab in [
        (np.ones((48, 48), np.float32), labels),  # constant: nothing to learn, but no crash and no NaN
        (image[20:28, 20:28], np.eye(8, dtype=np.uint8)),  # 8x8, smaller than a patch
        (labels > 0, labels),  # bool image
    ]:
        m = train(img, lab, mode="dense", **TINY)
        assert all(torch.isfinite(p).all() for p in m.parameters())
        assert predict(m, img).shape == lab.shape


def test_stacks_of_different_sizes_and_a_2d_model_on_a_stack(data, model):
    image, labels = data
    stacks = [np.stack([image, image[::-1]]), np.stack([image[:40, :40]] * 3)]
    stack_labels = [np.stack([labels, labels[::-1]]), np.stack([labels[:40, :40]] * 3)]
    m = train(stacks, stack_labels, mode="dense", **TINY)
    assert [predict(m, s).shape for s in stacks] == [(2, 48, 48), (3, 40, 40)]
    assert predict(model, np.stack([image] * 3)).shape == (3, 48, 48)  # trained on 2D, run on a stack


# ---------------------------------------------------------------------------------------------- prediction, Python API


@pytest.mark.parametrize(
    "make,options,words",
    [
        (lambda im: im[:, :0], {}, ["empty"]),
        (lambda im: np.zeros((0, 10, 10)), {}, ["empty"]),
        (lambda im: None, {}, ["missing"]),
        (lambda im: [im, im[:10]], {}, ["not an array"]),
        (lambda im: im.astype(np.complex64), {}, ["complex"]),
        (lambda im: np.zeros(im.shape, "datetime64[s]"), {}, ["dates"]),
        (lambda im: im, {"threshold": 1.5}, ["threshold"]),
        (lambda im: im, {"threshold": float("nan")}, ["threshold"]),
        (lambda im: im, {"batch_size": 0}, ["batch_size"]),
        (lambda im: im, {"channel_axis": "last"}, ["channel_axis"]),
        (lambda im: im, {"channel_axis": 7}, ["out of range"]),
    ],
)
def test_bad_prediction_input(data, model, make, options, words):
    raises_clear(lambda: predict(model, make(data[0]), **options), *words)


def test_prediction_accepts_lists_and_checks_out(data, model):
    image, _ = data
    np.testing.assert_array_equal(predict(model, image.tolist()), predict(model, image))
    raises_clear(lambda: predict(model, image, out=np.zeros((4, 4), np.uint8)), "out has shape")


def test_extreme_float_values_stay_finite(model):
    plane = np.where(np.indices((32, 32)).sum(0) % 2, 3e38, -3e38).astype(np.float32)
    norm = normalize(plane[None])
    assert np.isfinite(norm).all() and norm.min() >= 0 and norm.max() <= 1
    assert predict(model, plane).shape == (32, 32)


def test_2d_image_larger_than_memory_is_refused_before_reading(model, tmp_path):
    """A 40 GB memory-mapped .npy (a sparse file: no disk used) must not be read: its output would not fit."""
    from napari_unet import read_image

    path = tmp_path / "huge.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(200_000, 200_000))
    del big
    image = read_image(path)
    raises_clear(lambda: predict(model, image), "200000 x 200000", "GiB")
    raises_clear(lambda: next(iter_predict(model, image)), "GiB")
    raises_clear(lambda: Trainer(image, np.zeros((8, 8), np.uint8)), "GiB")  # refused before the shape check reads


class _PlaneSpy:
    """A lazy (Z, H, W) array that records what is read: prediction must read one plane at a time."""

    def __init__(self, z: int, h: int, w: int) -> None:
        self.shape, self.dtype, self.reads = (z, h, w), np.dtype(np.uint16), []

    def __getitem__(self, key):
        self.reads.append(key)
        assert isinstance(key, tuple) and isinstance(key[0], (int, np.integer)), f"read more than a plane: {key}"
        return np.full(self.shape[1:], int(key[0]) * 100, self.dtype)


def test_stacks_and_zarr_stream_plane_by_plane(model, tmp_path):
    import zarr

    spy = _PlaneSpy(5, 40, 40)
    out = zarr.open(str(tmp_path / "out.zarr"), mode="w", shape=spy.shape, chunks=(1, 40, 40), dtype="u1")
    predict(model, spy, out=out)
    assert len(spy.reads) == 5 and out.shape == (5, 40, 40)
    src = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=(3, 40, 40), chunks=(1, 40, 40), dtype="u2")
    src[:] = 7
    assert [idx for idx, _ in iter_predict(model, src)] == [(0,), (1,), (2,)]


def test_stack_output_larger_than_memory_is_refused(model, monkeypatch):
    import napari_unet.images as data_module

    monkeypatch.setattr(data_module, "available_memory", lambda: 1_000)
    raises_clear(lambda: predict(model, _PlaneSpy(100, 8, 8)), "stack", "out=")


# ---------------------------------------------------------------------------------------------- properties

NUMERIC = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), st.just(np.dtype(bool)))


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        st.one_of(NUMERIC, hnp.complex_number_dtypes(), st.just(np.dtype("U3"))),
        hnp.array_shapes(max_dims=4, min_side=0, max_side=4),
    )
)
def test_check_image_accepts_exactly_numeric_arrays_with_pixels(a):
    ok = a.dtype.kind in "biuf" and a.ndim >= 2 and a.size > 0
    if ok:
        assert check_image(a) is a
    else:
        raises_clear(lambda: check_image(a))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(NUMERIC, hnp.array_shapes(max_dims=2, max_side=5)))
def test_integer_labels_convert_or_refuse_clearly(a):
    try:
        out = integer_labels(a)
    except InputError as e:
        assert_clear(str(e))
        return
    assert out.dtype.kind == "i" and np.array_equal(out, a.astype(np.float64))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(hnp.floating_dtypes(sizes=(32, 64)), hnp.array_shapes(min_dims=3, max_dims=3, max_side=6)))
def test_normalize_is_always_finite(a):
    with np.errstate(over="ignore"):
        a = a.astype(np.float32)
    assert np.isfinite(normalize(a)).all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    dtype=NUMERIC,
    fill=st.sampled_from(["random", "constant", "nan"]),
)
def test_predict_any_small_shape_and_dtype(model, shape, dtype, fill):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * 100).astype(dtype) if fill != "constant" else np.ones(shape, dtype)
    if fill == "nan" and dtype.kind == "f":
        image[0, 0] = np.nan
    out = predict(model, image)
    assert out.shape == shape and out.dtype == np.uint8


# ---------------------------------------------------------------------------------------------- untrusted model files


def _payload(model, tmp_path):
    return torch.load(save_model(model, tmp_path / "good.pt", overwrite=True), weights_only=True)


def _malicious_pickle(command: str) -> bytes:
    # GLOBAL os.system, then REDUCE with (command,): what a booby-trapped checkpoint's data.pkl does
    return b"cos\nsystem\n(" + b"V" + command.encode() + b"\ntR."


def test_torch_zip_whose_data_pkl_calls_os_system(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = save_model(model, tmp_path / "good.pt")
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                data = _malicious_pickle("touch HACKED")
            dst.writestr(item, data)
    raises_clear(lambda: load_model(evil), "not a napari-unet model file")
    assert not (tmp_path / "HACKED").exists()
    rc = main(["predict", str(evil), "x.tif", "-o", str(tmp_path / "o")])
    assert rc == 2 and not (tmp_path / "HACKED").exists() and not (tmp_path / "o").exists()


def _edit(payload, **changes):
    p = dict(payload)
    p.update(changes)
    return p


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda p: _edit(p, meta="{not json"), ["inconsistent"]),
        (lambda p: _edit(p, meta="[1, 2]"), ["inconsistent"]),
        (lambda p: _edit(p, config=json.dumps({**json.loads(p["config"]), "filters": 10**6})), ["filters"]),
        (lambda p: _edit(p, config=json.dumps({**json.loads(p["config"]), "filters": "4"})), ["filters"]),
        (lambda p: _edit(p, config=json.dumps({**json.loads(p["config"]), "depth": 2.0})), ["depth"]),
        (lambda p: _edit(p, config=json.dumps({**json.loads(p["config"]), "n_classes": True})), ["n_classes"]),
        (lambda p: _edit(p, config=json.dumps({**json.loads(p["config"]), "dropout": "high"})), ["dropout"]),
        (lambda p: _edit(p, config=json.dumps({"in_channels": 1})), ["n_classes"]),
        (lambda p: _edit(p, config={"in_channels": 1}), ["inconsistent"]),
        (lambda p: _edit(p, state_dict={**p["state_dict"], "extra.weight": torch.zeros(1)}), ["unexpected"]),
        (lambda p: _edit(p, state_dict={**p["state_dict"], 7: torch.zeros(1)}), ["unexpected"]),
        (lambda p: _edit(p, state_dict={k: v.tolist() for k, v in p["state_dict"].items()}), ["not a tensor"]),
        (lambda p: _edit(p, state_dict={k: v.flatten() for k, v in p["state_dict"].items()}), ["shape"]),
        (
            lambda p: _edit(
                p, state_dict={k: v * np.nan if v.is_floating_point() else v for k, v in p["state_dict"].items()}
            ),
            ["NaN"],
        ),
        (lambda p: _edit(p, state_dict=[1, 2]), ["inconsistent"]),
        (
            lambda p: _edit(p, meta=json.dumps({"normalization": {"method": "percentile", "low": "x", "high": 99}})),
            ["normalization"],
        ),
        (lambda p: _edit(p, meta=json.dumps({"training": [1]})), ["training"]),
        (lambda p: _edit(p, meta=json.dumps({"label_mode": "magic"})), ["label_mode"]),
        (lambda p: [p], ["not a napari-unet model"]),
    ],
)
def test_odd_model_files_are_refused_clearly(model, tmp_path, change, words):
    bad = tmp_path / "bad.pt"
    torch.save(change(_payload(model, tmp_path)), bad)
    raises_clear(lambda: load_model(bad), *words)


def test_model_files_that_are_no_files(model, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    raises_clear(lambda: load_model(tmp_path / "empty.pt"), "empty")
    (tmp_path / "folder.pt").mkdir()
    raises_clear(lambda: load_model(tmp_path / "folder.pt"), "folder")
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    (tmp_path / "numpy.pt").write_bytes(buf.getvalue())
    raises_clear(lambda: load_model(tmp_path / "numpy.pt"), "not a napari-unet model file")


# ---------------------------------------------------------------------------------------------- command line


@pytest.fixture
def files(tmp_path, data, model):
    image, labels = data
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    save_model(model, tmp_path / "m.pt")
    return tmp_path


def cli_error(argv, *words, capsys) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err, err
    assert_clear(err[-1], *words)
    assert not any("Traceback" in line for line in err)
    return err[-1]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    "setup,argv,words",
    [
        (
            lambda d: (d / "z.tif").write_bytes(b""),
            ["predict", "{d}/m.pt", "{d}/z.tif", "-o", "{d}/o"],
            ["empty (0 bytes)"],
        ),
        (
            lambda d: (d / "z.pt").write_bytes(b""),
            ["predict", "{d}/z.pt", "{d}/img.tif", "-o", "{d}/o"],
            ["empty (0 bytes)"],
        ),
        (lambda d: (d / "f.tif").mkdir(), ["predict", "{d}/m.pt", "{d}/f.tif", "-o", "{d}/o"], ["is a folder"]),
        (lambda d: (d / "f.pt").mkdir(), ["predict", "{d}/f.pt", "{d}/img.tif", "-o", "{d}/o"], ["is a folder"]),
        (
            lambda d: (d / "junk.png").write_bytes(b"\x89PNG junk"),
            ["predict", "{d}/m.pt", "{d}/junk.png", "-o", "{d}/o"],
            ["cannot read"],
        ),
        (
            lambda d: (d / "cut.pt").write_bytes((d / "m.pt").read_bytes()[:2000]),
            ["predict", "{d}/cut.pt", "{d}/img.tif", "-o", "{d}/o"],
            ["damaged"],
        ),
        (
            lambda d: np.save(d / "c.npy", np.ones((8, 8), np.complex64)),
            ["predict", "{d}/m.pt", "{d}/c.npy", "-o", "{d}/o"],
            ["complex"],
        ),
        (
            lambda d: np.save(d / "e.npy", np.ones((0, 8), np.float32)),
            ["predict", "{d}/m.pt", "{d}/e.npy", "-o", "{d}/o"],
            ["empty"],
        ),
        (lambda d: None, ["predict", "{d}/m.pt", "{d}/img.tif", "-o", "{d}/o", "--threshold", "2"], ["threshold"]),
        (lambda d: None, ["predict", "{d}/m.pt", "{d}/img.tif", "-o", "/proc/napari-unet-test"], ["output folder"]),
        (
            lambda d: None,
            ["train", "{d}/img.tif", "--labels", "{d}/lab.tif", "-o", "{d}", *TINY_ARGS],
            ["already exists"],
        ),
        (
            lambda d: None,
            ["train", "{d}/img.tif", "--labels", "{d}/lab.tif", "-o", "{d}", "--overwrite", *TINY_ARGS],
            ["is a folder"],
        ),
        (
            lambda d: None,
            ["train", "{d}/img.tif", "--labels", "{d}/lab.tif", "-o", "{d}/no/m.pt", *TINY_ARGS],
            ["does not exist"],
        ),
        (
            lambda d: None,
            ["train", "{d}/img.tif", "--labels", "{d}/lab.tif", "-o", "/proc/m.pt", *TINY_ARGS],
            ["cannot write"],
        ),
        (
            lambda d: tifffile.imwrite(d / "rgb.tif", np.zeros((48, 48, 3), np.uint8)),
            ["train", "{d}/img.tif", "--labels", "{d}/rgb.tif", "-o", "{d}/n.pt", *TINY_ARGS],
            ["RGB"],
        ),
        (
            lambda d: None,
            ["train", "{d}/img.tif", "--labels", "{d}/lab.tif", "-o", "{d}/n.pt", "--from", "{d}/img.tif", *TINY_ARGS],
            ["not a napari-unet model"],
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_modifies_nothing(files, capsys, setup, argv, words):
    setup(files)
    before = _snapshot(files)
    cli_error([a.format(d=files) for a in argv], *words, capsys=capsys)
    assert _snapshot(files) == before
    assert not (files / "o").exists() or not any((files / "o").iterdir())


def test_cli_never_writes_over_its_own_inputs(files, capsys):
    d = files
    (d / "img_labels.tif").write_bytes((d / "lab.tif").read_bytes())
    (d / "t.csv").write_text("keep me")
    before = _snapshot(files)
    for argv in (
        ["train", d / "img.tif", "--labels", d / "lab.tif", "-o", d / "img.tif", "--overwrite", *TINY_ARGS],
        ["train", d / "img.tif", "--labels", d / "lab.tif", "-o", d / "sub" / ".." / "lab.tif", "--overwrite"],
        # img.tif's output would be img_labels.tif, which is also an input: refused before anything is written
        ["predict", d / "m.pt", d / "img.tif", d / "img_labels.tif", "-o", d, "--overwrite"],
        ["evaluate", "--pred", d / "lab.tif", "--truth", d / "img_labels.tif", "--csv", d / "lab.tif"],
    ):
        cli_error(argv, "is also an input", capsys=capsys)
    cli_error(
        ["evaluate", "--pred", d / "lab.tif", "--truth", d / "lab.tif", "--csv", d / "t.csv"],
        "already exists",
        capsys=capsys,
    )
    assert _snapshot(files) == before
    argv = ["evaluate", "--pred", d / "lab.tif", "--truth", d / "lab.tif", "--csv", d / "t.csv", "--overwrite"]
    assert main([str(a) for a in argv]) == 0
    assert (d / "t.csv").read_text().startswith("image,")


def test_cli_unicode_and_spaces_in_paths(files, capsys):
    d = files / "dossier é 𝛼 space"
    d.mkdir()
    (d / "imáge 1.tif").write_bytes((files / "img.tif").read_bytes())
    (d / "lábels 1.tif").write_bytes((files / "lab.tif").read_bytes())
    assert (
        main(
            [
                "train",
                str(d / "imáge 1.tif"),
                "--labels",
                str(d / "lábels 1.tif"),
                "-o",
                str(d / "módel.pt"),
                "--dense",
                *TINY_ARGS,
            ]
        )
        in (0, POOR_MODEL_EXIT)  # a tiny model may be judged poor; it is saved either way
    )
    assert main(["predict", str(d / "módel.pt"), str(d / "imáge 1.tif"), "-o", str(d / "out é")]) == 0
    assert tifffile.imread(d / "out é" / "imáge 1_labels.tif").shape == (48, 48)
