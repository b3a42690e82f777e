"""Models and data: ResNet builders, the shipped trained digits models, dataset loaders.

See :mod:`approxtvm.models.zoo` and :mod:`approxtvm.models.datasets`. Nothing here imports torch.
"""

from approxtvm.models.datasets import (
    Dataset,
    check_compatible,
    load_dataset,
    load_digits,
    load_image_folder,
    load_npz,
)
from approxtvm.models.zoo import (
    ComputeLayer,
    calibration_data,
    compute_layers,
    get_model,
    list_models,
    manifest,
    model_info,
    model_path,
    resnet8,
    resnet18,
    resnet20,
    resnet50,
)

__all__ = [
    "ComputeLayer",
    "Dataset",
    "calibration_data",
    "check_compatible",
    "compute_layers",
    "get_model",
    "list_models",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "manifest",
    "model_info",
    "model_path",
    "resnet8",
    "resnet18",
    "resnet20",
    "resnet50",
]
