"""The user's labelled images for the study: an ImageNet-style folder → one prepared ``.npz``.

``root/<class folder>/*.jpg|png`` is resized to the model's input size, given the model's channel
count, normalised (ImageNet mean/std by default) and labelled by the model's class index of each
folder: either the line number of the folder's name in a ``--labels`` file (one class folder name
per line, in the order of the model's outputs — for ImageNet, the 1,000 sorted synset ids), or,
without a file, the folder's index among the sorted folders (right only when every class is
present). The result is written once as an ``.npz`` (``x``, ``y``) next to the study's outputs,
so every worker process reads the same preprocessed tensors, and its bytes enter the journal's
context fingerprint like any dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.errors import DataError

#: Per-channel mean and standard deviation of ImageNet RGB pixels in [0, 1] (the usual constants).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS = ("imagenet", "unit")


@dataclass(frozen=True, slots=True)
class PreparedData:
    """A prepared image folder.

    Attributes
    ----------
    path
        The ``.npz`` written (``x`` float32 NCHW, ``y`` int64).
    samples
        Images.
    classes
        Class folders found.
    """

    path: Path
    samples: int
    classes: int


def read_labels_file(path: str | os.PathLike[str]) -> dict[str, int]:
    """Class folder name → model class index, from one name per line (blank lines and ``#``
    comments skipped; only the first whitespace-separated word of a line counts, so
    ``n01440764 tench`` works)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"labels file {p} not found",
            expected="a text file with one class folder name per line, in the model's output order",
            found="no such file",
            fix="check the --labels path",
        )
    mapping: dict[str, int] = {}
    index = 0
    for line in p.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip().split()
        if not word:
            continue
        if word[0] in mapping:
            raise DataError(
                f"labels file {p}: class {word[0]!r} listed twice",
                expected="each class folder name once",
                found=f"lines {mapping[word[0]] + 1} and {index + 1} (non-blank)",
                fix="remove the duplicate line",
            )
        mapping[word[0]] = index
        index += 1
    if not mapping:
        raise DataError(f"labels file {p} is empty", expected="one class name per line", found="no names")
    return mapping


def _input_chw(model: Any) -> tuple[int, int, int]:
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims[1:]) <= 0 or dims[1] not in (1, 3):
        raise DataError(
            "the model does not take images",
            expected="one input N×C×H×W with C = 1 or 3 and fixed H, W",
            found=f"input shape {dims}",
            fix="use --data with an .npz of preprocessed inputs instead of an image folder",
        )
    return dims[1], dims[2], dims[3]


def prepare_image_folder(
    folder: str | os.PathLike[str],
    model: Any,
    out_dir: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None = None,
    normalise: str = "imagenet",
    limit: int = 0,
) -> PreparedData:
    """Preprocess ``folder`` for ``model`` into ``out_dir/data-<hash>.npz`` (reused if present).

    Parameters
    ----------
    folder
        ``root/<class folder>/*.jpg|png``.
    model
        The ONNX model (its input gives channels and size).
    out_dir
        Where the ``.npz`` goes.
    labels
        Labels file (see :func:`read_labels_file`); ``None``: sorted-folder indices.
    normalise
        ``imagenet`` (``(pixel − mean) / std`` per RGB channel; grayscale uses the mean of the
        constants) or ``unit`` (pixels in [0, 1]).
    limit
        Keep at most this many images, taken evenly from every class (0 = all).
    """
    from approxtvm.models import load_image_folder

    if normalise not in NORMALISATIONS:
        raise DataError(f"unknown normalisation {normalise!r}", expected=" or ".join(NORMALISATIONS), found=normalise)
    c, h, w = _input_chw(model)
    mapping = None if labels is None else read_labels_file(labels)
    root = Path(folder)
    stamp = hashlib.sha256(
        json.dumps(
            {
                "root": str(root.resolve()),
                "files": sorted((str(f.relative_to(root)), f.stat().st_size) for f in root.rglob("*") if f.is_file()),
                "chw": [c, h, w],
                "labels": mapping,
                "normalise": normalise,
                "limit": limit,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    out = Path(out_dir) / f"data-{stamp}.npz"
    if out.is_file():
        with np.load(out) as z:
            return PreparedData(out, int(z["y"].shape[0]), len(np.unique(z["y"])))
    data = load_image_folder(root, size=(h, w), channels=c)  # type: ignore[arg-type]
    y = data.y
    assert y is not None  # image folders are labelled by their class folders
    if mapping is not None:
        missing = [name for name in data.classes if name not in mapping]
        if missing:
            raise DataError(
                f"image folder {root}: class folders missing from the labels file {labels}",
                expected="every class folder name listed in the labels file",
                found=", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""),
                fix="add the names, or remove those folders",
            )
        y = np.array([mapping[data.classes[int(i)]] for i in y], dtype=np.int64)
    x = data.x
    if normalise == "imagenet":
        mean = np.array(IMAGENET_MEAN if c == 3 else [np.mean(IMAGENET_MEAN)], np.float32)
        std = np.array(IMAGENET_STD if c == 3 else [np.mean(IMAGENET_STD)], np.float32)
        x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    if limit and limit < len(y):
        from approxtvm.explore.subsets import stratified_order

        keep = np.sort(stratified_order(y, len(y), 0)[:limit])
        x, y = x[keep], y[keep]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, x=np.ascontiguousarray(x, dtype=np.float32), y=y)
    tmp.replace(out)  # atomic: a worker never reads a half-written file
    return PreparedData(out, len(y), len(data.classes))
