import numpy as np
import pytest
import tifffile

from napari_unet import InputError, read_image, write_labels


def test_formats_round_trip(tmp_path):
    a = (np.arange(48).reshape(6, 8) % 5).astype(np.uint8)
    for name in ("a.tif", "a.npy", "a.png"):
        write_labels(tmp_path / name, a)
        np.testing.assert_array_equal(np.asarray(read_image(tmp_path / name)), a)


def test_stacks_are_read_lazily(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (5, 32, 32), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", stack)
    assert isinstance(read_image(tmp_path / "raw.tif"), np.memmap)
    tifffile.imwrite(tmp_path / "zlib.tif", stack, compression="zlib")
    lazy = read_image(tmp_path / "zlib.tif")
    assert not isinstance(lazy, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy[3]), stack[3])
    np.save(tmp_path / "s.npy", stack)
    assert isinstance(read_image(tmp_path / "s.npy"), np.memmap)


def test_zarr(tmp_path):
    import zarr

    z = zarr.open(str(tmp_path / "a.zarr"), mode="w", shape=(4, 16, 16), dtype="u2", chunks=(1, 16, 16))
    z[:] = 7
    assert read_image(tmp_path / "a.zarr").shape == (4, 16, 16)


def test_errors_and_no_overwrite(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "x.doc").write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "x.doc")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "bad.tif")
    write_labels(tmp_path / "l.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="already exists"):
        write_labels(tmp_path / "l.tif", np.ones((4, 4), np.uint8))
    assert read_image(tmp_path / "l.tif").max() == 0
