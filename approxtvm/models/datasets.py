"""Datasets: the shipped digits split, user ``.npz`` files and image folders.

All loaders return a :class:`Dataset` with float32 NCHW inputs and optional int64 labels.

The digits data are scikit-learn's 8×8 handwritten digits (1797 images, installed with
scikit-learn, no download). Split: ``numpy.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)``;
the first 1437 indices are the training set and the last 360 the test set (each returned in
ascending index order). Normalisation: ``pixel / 16`` as float32 in [0, 1], shape (N, 1, 8, 8).
The shipped models were trained and evaluated on exactly this split (see ``models.json``).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from approxtvm.errors import DataError

DIGITS_SPLIT_SEED = 0
"""Seed of the digits train/test permutation."""

DIGITS_TOTAL = 1797
DIGITS_TEST_SIZE = 360
DIGITS_TRAIN_SIZE = DIGITS_TOTAL - DIGITS_TEST_SIZE

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")

Split = Literal["train", "test", "all"]


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Model inputs and optional labels.

    Attributes
    ----------
    x
        float32 inputs, NCHW.
    y
        int64 labels of shape (N,), or ``None`` for unlabelled data.
    name
        Where the data came from (``digits:test``, a file or folder path).
    classes
        Class names by label index, when known (image folders); else empty.

    Notes
    -----
    Compared by identity (``eq=False``): element-wise array equality has no single truth value.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32 or self.x.ndim != 4:
            found = (
                f"dtype {self.x.dtype}, shape {self.x.shape}"
                if isinstance(self.x, np.ndarray)
                else type(self.x).__name__
            )
            raise DataError(
                f"dataset {self.name}: inputs x are not a float32 NCHW array",
                expected="numpy float32 array with 4 dimensions (N, C, H, W)",
                found=found,
                fix="convert with x.astype(np.float32) and add missing axes (e.g. x[:, None] for C=1)",
            )
        if self.y is not None and (
            not isinstance(self.y, np.ndarray) or self.y.dtype != np.int64 or self.y.shape != (len(self.x),)
        ):
            found = (
                f"dtype {self.y.dtype}, shape {self.y.shape}"
                if isinstance(self.y, np.ndarray)
                else type(self.y).__name__
            )
            raise DataError(
                f"dataset {self.name}: labels y do not match the inputs",
                expected=f"numpy int64 array of shape ({len(self.x)},)",
                found=found,
                fix="pass one integer class label per input (y.astype(np.int64)), or y=None",
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input (C, H, W)."""
        return tuple(int(d) for d in self.x.shape[1:])

    def take(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them if fewer)."""
        return Dataset(self.x[:n], None if self.y is None else self.y[:n], self.name, self.classes)


# ---------------------------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------------------------


def digits_split_indices(split: Split = "test") -> np.ndarray:
    """Indices into ``sklearn.datasets.load_digits()`` of a split, ascending (int64)."""
    if split not in ("train", "test", "all"):
        raise DataError(
            f"unknown digits split {split!r}",
            expected="'train', 'test' or 'all'",
            found=repr(split),
            fix="use load_digits('test'), load_digits('train') or load_digits('all')",
        )
    if split == "all":
        return np.arange(DIGITS_TOTAL, dtype=np.int64)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(DIGITS_TOTAL)
    part = perm[:DIGITS_TRAIN_SIZE] if split == "train" else perm[DIGITS_TRAIN_SIZE:]
    return np.sort(part).astype(np.int64)


def digits_split_fingerprint() -> str:
    """SHA-256 of the test indices (int64 little-endian); recorded in ``models.json``."""
    return hashlib.sha256(digits_split_indices("test").astype("<i8").tobytes()).hexdigest()


def load_digits(split: Split = "test") -> Dataset:
    """scikit-learn's 8×8 digits, split and normalised exactly as for the shipped models.

    Parameters
    ----------
    split
        ``"test"`` (360 images), ``"train"`` (1437) or ``"all"`` (1797).

    Returns
    -------
    Dataset
        x: float32 (N, 1, 8, 8) in [0, 1] (pixel / 16); y: int64 digit labels 0–9.
    """
    idx = digits_split_indices(split)
    from sklearn.datasets import load_digits as _sk_load_digits  # slow import, only when needed

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    x = (images[idx] / 16.0).astype(np.float32)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)[idx]
    return Dataset(np.ascontiguousarray(x), y, f"digits:{split}", tuple(str(i) for i in range(10)))


# ---------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Load a dataset from an ``.npz`` file with key ``x`` and optional key ``y``.

    ``x`` must be a floating-point array of shape (N, C, H, W) (any float dtype, converted to
    float32, finite values); ``y``, if present, an integer array of shape (N,).

    Raises
    ------
    DataError
        Missing or unreadable file, missing ``x``, wrong dtype or number of dimensions, non-finite
        inputs, or ``x``/``y`` length mismatch; the message names the file and the key.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"dataset file {p} not found",
            expected="an existing .npz file with keys 'x' (and optionally 'y')",
            found="no such file" if not p.exists() else "a directory",
            fix="check the path; create it with np.savez(path, x=x, y=y)",
        )
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"dataset file {p} is not a readable .npz archive",
            expected="a file written by np.savez / np.savez_compressed",
            found=f"{type(exc).__name__}: {exc}",
            fix="re-create it with np.savez(path, x=x, y=y) (object arrays are not allowed)",
        ) from exc
    if "x" not in arrays:
        raise DataError(
            f"dataset file {p}: key 'x' missing",
            expected="key 'x' with the inputs (N, C, H, W), optionally key 'y' with labels",
            found=f"keys {sorted(arrays)}",
            fix="save the inputs under 'x': np.savez(path, x=inputs, y=labels)",
        )
    x = arrays["x"]
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"dataset file {p}: key 'x' has dtype {x.dtype}",
            expected="a floating-point array, normalised as the model expects",
            found=f"dtype {x.dtype}",
            fix="convert and normalise before saving, e.g. x.astype(np.float32) / 255",
        )
    if x.ndim != 4:
        raise DataError(
            f"dataset file {p}: key 'x' has {x.ndim} dimensions",
            expected="4 dimensions (N, C, H, W)",
            found=f"shape {x.shape}",
            fix="add a channel axis (x[:, None] for N×H×W) or transpose NHWC to NCHW (x.transpose(0, 3, 1, 2))",
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(
            f"dataset file {p}: key 'x' contains non-finite values",
            expected="finite inputs",
            found=f"{bad} NaN/Inf values",
            fix="clean or drop the affected samples before saving",
        )
    y: np.ndarray | None = None
    if "y" in arrays:
        y_raw = arrays["y"]
        if not np.issubdtype(y_raw.dtype, np.integer):
            raise DataError(
                f"dataset file {p}: key 'y' has dtype {y_raw.dtype}",
                expected="integer class labels",
                found=f"dtype {y_raw.dtype}",
                fix="save labels as integers, e.g. y.astype(np.int64) (class indices, not one-hot)",
            )
        if y_raw.ndim != 1:
            raise DataError(
                f"dataset file {p}: key 'y' has shape {y_raw.shape}",
                expected="1 dimension (N,) of class indices",
                found=f"shape {y_raw.shape}",
                fix="save class indices, e.g. y.argmax(axis=1) for one-hot labels, or y.ravel()",
            )
        if len(y_raw) != len(x):
            raise DataError(
                f"dataset file {p}: keys 'x' and 'y' have different lengths",
                expected="one label per input",
                found=f"{len(x)} inputs in 'x', {len(y_raw)} labels in 'y'",
                fix="save matching arrays (same first dimension)",
            )
        y = y_raw.astype(np.int64)
    return Dataset(x, y, str(p))


# ---------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------


def load_image_folder(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    channels: Literal[1, 3] = 1,
) -> Dataset:
    """Load ``root/<class_name>/*.png|*.jpg|*.jpeg`` as a labelled dataset.

    Labels are the index of the class folder in sorted order of folder names (hidden folders are
    skipped); files inside a class folder are read in sorted order. Pixels become float32 in
    [0, 1] (value / 255).

    Parameters
    ----------
    path
        Root folder.
    size
        ``(height, width)`` every image is resized to (bilinear). ``None``: keep the native size,
        which must then be the same for all images.
    channels
        1 (grayscale, Pillow mode ``L``) or 3 (RGB).

    Raises
    ------
    DataError
        Missing folder, no class folders, an empty class folder, an unreadable image, or
        differing image sizes with ``size=None``; the message names the folder or file.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow is installed with matplotlib

    root = Path(path)
    if not root.is_dir():
        raise DataError(
            f"image folder {root} not found",
            expected="a directory laid out as root/<class_name>/*.png|jpg",
            found="no such directory" if not root.exists() else "a file",
            fix="check the path",
        )
    if channels not in (1, 3):
        raise DataError(
            f"image folder {root}: unsupported channels={channels!r}",
            expected="1 (grayscale) or 3 (RGB)",
            found=repr(channels),
            fix="pass channels=1 or channels=3 to match the model's input",
        )
    if size is not None and (len(size) != 2 or not all(isinstance(s, int | np.integer) and s > 0 for s in size)):
        raise DataError(
            f"image folder {root}: invalid size={size!r}",
            expected="(height, width) with positive integers",
            found=repr(size),
            fix="pass e.g. size=(8, 8)",
        )
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        loose = [f.name for f in root.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS]
        raise DataError(
            f"image folder {root} has no class sub-folders",
            expected="root/<class_name>/*.png|jpg (one sub-folder per class)",
            found=f"{len(loose)} images directly in the root" if loose else "no sub-folders",
            fix="move the images into one sub-folder per class (a single folder for unlabelled data)",
        )
    mode = "L" if channels == 1 else "RGB"
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    first_shape: tuple[int, ...] | None = None
    first_file: Path | None = None
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(
                f"image folder {root}: class folder {class_dir.name!r} has no images",
                expected=f"files ending in {', '.join(IMAGE_EXTENSIONS)} in {class_dir}",
                found="none",
                fix="add images or remove the empty folder (labels are indices of sorted folders)",
            )
        for f in files:
            try:
                with Image.open(f) as img:
                    img = img.convert(mode)
                    if size is not None:
                        img = img.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
                    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise DataError(
                    f"image file {f} cannot be read",
                    expected="a valid PNG or JPEG image",
                    found=f"{type(exc).__name__}: {exc}",
                    fix="replace or delete the file",
                ) from exc
            arr = arr[None, :, :] if channels == 1 else arr.transpose(2, 0, 1)
            if first_shape is None:
                first_shape, first_file = arr.shape, f
            elif arr.shape != first_shape:
                raise DataError(
                    f"image file {f} has a different size than {first_file}",
                    expected=f"all images {first_shape[1]}×{first_shape[2]} (H×W)",
                    found=f"{arr.shape[1]}×{arr.shape[2]}",
                    fix="pass size=(H, W) to resize every image to the model's input size",
                )
            arrays.append(arr)
            labels.append(label)
    x = np.ascontiguousarray(np.stack(arrays), dtype=np.float32)
    return Dataset(x, np.asarray(labels, dtype=np.int64), str(root), tuple(d.name for d in class_dirs))


# ---------------------------------------------------------------------------------------------
# Compatibility and dispatch
# ---------------------------------------------------------------------------------------------


def _model_input_shape(model: onnx.ModelProto) -> list[int | str]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise DataError(
            f"model {model.graph.name!r} has no data input",
            expected="one graph input",
            found="none",
            fix="pass the input shape explicitly",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def check_compatible(dataset: Dataset, input_shape: Sequence[int | str | None] | onnx.ModelProto) -> None:
    """Check that a dataset's samples fit a model input.

    Parameters
    ----------
    dataset
        The data.
    input_shape
        Model input shape (N, C, H, W) — symbolic entries (``str`` or ``None``) match anything,
        the batch dimension is not checked — or a model whose first input is used.

    Raises
    ------
    DataError
        Different rank, channel count or spatial size; the message says expected vs found and how
        to fix it (resize, change channels, transpose).
    """
    shape = _model_input_shape(input_shape) if isinstance(input_shape, onnx.ModelProto) else list(input_shape)
    found = dataset.x.shape
    expected_txt = "×".join(str(d) for d in shape)
    found_txt = "×".join(str(d) for d in found)
    if len(shape) != len(found):
        raise DataError(
            f"dataset {dataset.name} does not fit the model input",
            expected=f"{len(shape)}-D input {expected_txt}",
            found=f"{len(found)}-D data {found_txt}",
            fix="reshape the data to the model's layout (NCHW)",
        )

    def fixed(d: int | str | None) -> bool:
        return isinstance(d, int | np.integer) and int(d) > 0

    mismatch = [i for i in range(1, len(shape)) if fixed(shape[i]) and int(shape[i]) != found[i]]  # type: ignore[arg-type]
    if not mismatch:
        return
    if len(shape) == 4 and 1 in mismatch:
        if found[3] == shape[1] and found[1] != shape[1]:
            fix = "the data look NHWC: transpose to NCHW with x.transpose(0, 3, 1, 2)"
        else:
            fix = f"load images with channels={shape[1]} (load_image_folder(..., channels={shape[1]}))"
    elif len(shape) == 4:
        fix = (
            f"resize the data to {shape[2]}×{shape[3]}: "
            f"load_image_folder(..., size=({shape[2]}, {shape[3]})) "
            "or resize your arrays before saving the .npz"
        )
    else:
        fix = "reshape the data to the model's input shape"
    raise DataError(
        f"dataset {dataset.name} does not fit the model input",
        expected=f"samples of shape {expected_txt} (batch dimension free)",
        found=f"data of shape {found_txt}",
        fix=fix,
    )


def load_dataset(
    spec: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    channels: Literal[1, 3] = 1,
) -> Dataset:
    """Load a dataset from a short specification.

    Parameters
    ----------
    spec
        ``"digits"`` (test split), ``"digits:train"``, ``"digits:test"``, ``"digits:all"``, the
        path of an ``.npz`` file, or an image-folder directory.
    size, channels
        Passed to :func:`load_image_folder` for directories.

    Raises
    ------
    DataError
        Unknown specification or missing path, or any error of the chosen loader.
    """
    text = os.fspath(spec)
    if text == "digits" or text.startswith("digits:"):
        split = text.partition(":")[2] or "test"
        return load_digits(split)  # type: ignore[arg-type]  # validated there
    p = Path(text)
    if p.is_dir():
        return load_image_folder(p, size=size, channels=channels)
    if p.suffix.lower() == ".npz":
        return load_npz(p)
    raise DataError(
        f"cannot load dataset {text!r}",
        expected="'digits', 'digits:train|test|all', a path to an .npz file, or an image folder",
        found="no such file or directory" if not p.exists() else f"a file with suffix {p.suffix!r}",
        fix="check the path, or convert the data to an .npz with keys 'x' and 'y'",
    )
