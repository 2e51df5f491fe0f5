import os
import pickle

import numpy as np
import pytest
import torch

from napari_unet import InputError, load_model, predict, save_model


def test_round_trip_predicts_the_same(tiny_model, blobs, tmp_path):
    image, _ = blobs
    path = save_model(tiny_model, tmp_path / "m.pt")
    loaded = load_model(path)
    assert loaded.config == tiny_model.config and loaded.meta == tiny_model.meta
    np.testing.assert_array_equal(predict(loaded, image), predict(tiny_model, image))


def test_existing_file_is_kept(tiny_model, tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        save_model(tiny_model, path)
    assert path.read_bytes() == b"precious"
    save_model(tiny_model, path, overwrite=True)
    assert load_model(path).config == tiny_model.config


def test_failed_write_leaves_the_old_file(tiny_model, tmp_path, monkeypatch):
    path = save_model(tiny_model, tmp_path / "m.pt")
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(tiny_model, path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


class _Trap:
    def __reduce__(self):
        return (os.system, ("touch HACKED",))


def test_booby_trapped_pickle_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-unet-model", "payload": _Trap()}, path)
    with pytest.raises(InputError, match="not a napari-unet model file"):
        load_model(path)
    assert not (tmp_path / "HACKED").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Trap()))
    with pytest.raises(InputError):
        load_model(raw)
    assert not (tmp_path / "HACKED").exists()


def test_junk_truncated_and_foreign_files(tiny_model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01not a model")
    with pytest.raises(InputError, match="damaged"):
        load_model(junk)
    good = save_model(tiny_model, tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(InputError):
        load_model(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(InputError, match="not a napari-unet model"):
        load_model(foreign)
    with pytest.raises(InputError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


def test_incompatible_weights(tiny_model, tmp_path):
    payload = torch.load(save_model(tiny_model, tmp_path / "m.pt"), weights_only=True)
    payload["config"] = payload["config"].replace('"filters": 8', '"filters": 16')
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(InputError, match="inconsistent"):
        load_model(bad)
    payload["format_version"] = 99
    torch.save(payload, bad)
    with pytest.raises(InputError, match="newer napari-unet"):
        load_model(bad)
