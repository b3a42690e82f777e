"""Dataset loaders: digits split, .npz and image-folder round trips, every bad input a DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from approxtvm.errors import DataError
from approxtvm.models import datasets, zoo
from approxtvm.models.datasets import Dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return datasets.load_digits("all")


# ---------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------


def test_digits_splits(digits: Dataset) -> None:
    test, train = datasets.load_digits("test"), datasets.load_digits("train")
    for ds, n in ((test, 360), (train, 1437), (digits, 1797)):
        assert ds.x.shape == (n, 1, 8, 8) and ds.x.dtype == np.float32
        assert ds.y is not None and ds.y.shape == (n,) and ds.y.dtype == np.int64
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert len(ds) == n
    assert test.name == "digits:test"
    assert digits.y is not None
    idx = datasets.digits_split_indices("test")
    np.testing.assert_array_equal(test.x, digits.x[idx])
    np.testing.assert_array_equal(test.y, digits.y[idx])
    assert set(np.unique(train.y).tolist()) == set(range(10))
    with pytest.raises(DataError, match="split"):
        datasets.load_digits("valid")  # type: ignore[arg-type]


def test_load_dataset_specs(tmp_path: Path, digits: Dataset) -> None:
    assert datasets.load_dataset("digits").name == "digits:test"
    assert len(datasets.load_dataset("digits:train")) == 1437
    assert len(datasets.load_dataset("digits:all")) == 1797
    np.savez(tmp_path / "d.npz", x=digits.x[:5], y=digits.y[:5])  # type: ignore[index]
    assert len(datasets.load_dataset(tmp_path / "d.npz")) == 5
    _write_folder(tmp_path / "imgs", digits.take(6))
    assert len(datasets.load_dataset(str(tmp_path / "imgs"), size=(8, 8))) == 6
    with pytest.raises(DataError, match=r"nothing\.npz"):
        datasets.load_dataset(tmp_path / "nothing.npz")
    with pytest.raises(DataError, match="cannot load dataset"):
        datasets.load_dataset("mnist")


# ---------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path, digits: Dataset) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=digits.x, y=digits.y)
    ds = datasets.load_npz(path)
    np.testing.assert_array_equal(ds.x, digits.x)
    np.testing.assert_array_equal(ds.y, digits.y)  # type: ignore[arg-type]
    assert ds.name == str(path)
    # unlabelled, float64 and int32 labels are accepted (converted)
    np.savez_compressed(path, x=digits.x[:3].astype(np.float64))
    ds = datasets.load_npz(path)
    assert ds.y is None and ds.x.dtype == np.float32
    np.savez(path, x=digits.x[:3], y=np.array([1, 2, 3], dtype=np.int32))
    assert datasets.load_npz(path).y.dtype == np.int64  # type: ignore[union-attr]


BAD_NPZ = {
    "missing_x": ({"inputs": np.zeros((2, 1, 8, 8), np.float32)}, "key 'x' missing"),
    "int_x": ({"x": np.zeros((2, 1, 8, 8), np.uint8)}, "key 'x' has dtype uint8"),
    "x_3d": ({"x": np.zeros((2, 8, 8), np.float32)}, "key 'x' has 3 dimensions"),
    "x_nan": ({"x": np.full((2, 1, 8, 8), np.nan, np.float32)}, "key 'x' contains non-finite"),
    "float_y": ({"x": np.zeros((2, 1, 8, 8), np.float32), "y": np.zeros(2)}, "key 'y' has dtype float64"),
    "onehot_y": (
        {"x": np.zeros((2, 1, 8, 8), np.float32), "y": np.eye(2, dtype=np.int64)},
        "key 'y' has shape",
    ),
    "length": ({"x": np.zeros((2, 1, 8, 8), np.float32), "y": np.zeros(3, np.int64)}, "different lengths"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_npz_bad_inputs_name_file_and_key(tmp_path: Path, case: str) -> None:
    arrays, message = BAD_NPZ[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError) as exc:
        datasets.load_npz(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)
    assert exc.value.fix


def test_npz_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.npz") as exc:
        datasets.load_npz(tmp_path / "missing.npz")
    assert "not found" in str(exc.value)
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match=r"corrupt\.npz"):
        datasets.load_npz(bad)
    with pytest.raises(DataError, match="not found"):
        datasets.load_npz(tmp_path)  # a directory


# ---------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------


def _write_folder(root: Path, ds: Dataset, rgb: bool = False, ext: str = "png") -> None:
    """Write ds as root/<class>/<i>.png with 8-bit pixels = round(x * 255)."""
    assert ds.y is not None
    for i, (img, label) in enumerate(zip(ds.x, ds.y, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(img[0] * 255).astype(np.uint8)
        im = Image.fromarray(pixels, mode="L")
        if rgb:
            im = im.convert("RGB")
        im.save(folder / f"{i:04d}.{ext}")


def test_image_folder_round_trip(tmp_path: Path, digits: Dataset) -> None:
    ds = digits.take(40)
    _write_folder(tmp_path, ds)
    loaded = datasets.load_image_folder(tmp_path)
    assert loaded.x.shape == (40, 1, 8, 8) and loaded.x.dtype == np.float32
    classes = sorted({f"class_{v}" for v in ds.y.tolist()})  # type: ignore[union-attr]
    assert loaded.classes == tuple(classes)
    # files are read class by class, in sorted order: compare per file
    expected = {
        (f"class_{lab}", i): np.round(img * 255) / 255
        for i, (img, lab) in enumerate(zip(ds.x, ds.y, strict=True))  # type: ignore[arg-type]
    }
    order = sorted(expected, key=lambda k: (k[0], k[1]))
    np.testing.assert_allclose(loaded.x, np.stack([expected[k] for k in order]), atol=1e-6)
    np.testing.assert_array_equal(loaded.y, [classes.index(k[0]) for k in order])  # type: ignore[arg-type]


def test_image_folder_rgb_resize_and_jpeg(tmp_path: Path, digits: Dataset) -> None:
    _write_folder(tmp_path / "rgb", digits.take(5), rgb=True, ext="jpg")
    rgb = datasets.load_image_folder(tmp_path / "rgb", size=(16, 12), channels=3)
    assert rgb.x.shape == (5, 3, 16, 12)
    assert rgb.x.min() >= 0.0 and rgb.x.max() <= 1.0
    gray = datasets.load_image_folder(tmp_path / "rgb", channels=1)
    assert gray.x.shape == (5, 1, 8, 8)
    datasets.check_compatible(gray, zoo.get_model("digits_cnn"))


def test_image_folder_errors(tmp_path: Path, digits: Dataset) -> None:
    with pytest.raises(DataError, match="not found"):
        datasets.load_image_folder(tmp_path / "nope")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (8, 8)).save(flat / "a.png")
    with pytest.raises(DataError, match="no class sub-folders") as exc:
        datasets.load_image_folder(flat)
    assert "1 images directly" in str(exc.value)

    empty = tmp_path / "empty"
    _write_folder(empty, digits.take(3))
    (empty / "zzz").mkdir()
    with pytest.raises(DataError, match="'zzz' has no images"):
        datasets.load_image_folder(empty)

    corrupt = tmp_path / "corrupt"
    _write_folder(corrupt, digits.take(3))
    bad = next((corrupt).glob("*/*.png"))
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError) as exc:
        datasets.load_image_folder(corrupt)
    assert str(bad) in str(exc.value)

    mixed = tmp_path / "mixed"
    _write_folder(mixed, digits.take(2))
    Image.new("L", (10, 9)).save(mixed / "class_0" / "zz_big.png")
    with pytest.raises(DataError, match=r"zz_big\.png") as exc:
        datasets.load_image_folder(mixed)
    assert "size=(H, W)" in str(exc.value)
    assert datasets.load_image_folder(mixed, size=(8, 8)).x.shape == (3, 1, 8, 8)

    with pytest.raises(DataError, match="channels"):
        datasets.load_image_folder(mixed, channels=2)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="size"):
        datasets.load_image_folder(mixed, size=(0, 8))


# ---------------------------------------------------------------------------------------------
# compatibility and the Dataset record
# ---------------------------------------------------------------------------------------------


def test_check_compatible(digits: Dataset) -> None:
    datasets.check_compatible(digits, ["N", 1, 8, 8])
    datasets.check_compatible(digits, [1, 1, 8, 8])  # batch dimension is not checked
    datasets.check_compatible(digits, [None, None, 8, 8])
    with pytest.raises(DataError) as exc:
        datasets.check_compatible(digits, zoo.resnet8())
    msg = str(exc.value)
    assert "1×3×32×32" in msg and "1797×1×8×8" in msg and "channels=3" in msg
    with pytest.raises(DataError, match=r"size=\(16, 16\)"):
        datasets.check_compatible(digits, ["N", 1, 16, 16])
    nhwc = Dataset(np.zeros((2, 8, 8, 1), np.float32), None, "nhwc")
    with pytest.raises(DataError, match="transpose"):
        datasets.check_compatible(nhwc, ["N", 1, 8, 8])
    with pytest.raises(DataError, match="2-D input"):
        datasets.check_compatible(digits, ["N", 64])


def test_dataset_validates_fields() -> None:
    with pytest.raises(DataError, match="float32 NCHW"):
        Dataset(np.zeros((2, 8, 8), np.float32), None, "bad")
    with pytest.raises(DataError, match="float32 NCHW"):
        Dataset(np.zeros((2, 1, 8, 8), np.float64), None, "bad")
    with pytest.raises(DataError, match="labels"):
        Dataset(np.zeros((2, 1, 8, 8), np.float32), np.zeros(3, np.int64), "bad")
    ds = Dataset(np.zeros((4, 1, 2, 2), np.float32), np.arange(4, dtype=np.int64), "ok")
    assert ds.sample_shape == (1, 2, 2) and len(ds.take(2)) == 2
