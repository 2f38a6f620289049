"""Training: data sets, augmentation and the one training loop shared by evaluators and final training."""

from ..paths import default_cache_dir
from .augment import augment_batch, cutout, random_crop, random_flip
from .loop import (
    ArchTraining,
    Progress,
    TrainConfig,
    TrainOutcome,
    TrainResult,
    accuracy,
    build_model,
    fit,
    resolve_device,
    train_and_evaluate,
    train_architecture,
)
from .readers import DATASETS, ImageData, dataset_shape, load_dataset
from .splits import DataConfig, Normalise, Splits, TensorSet, make_splits

__all__ = [
    "ArchTraining", "DATASETS", "DataConfig", "ImageData", "Normalise", "Progress", "Splits", "TensorSet", "TrainConfig", "TrainOutcome",
    "TrainResult", "accuracy", "augment_batch", "build_model", "cutout", "dataset_shape", "default_cache_dir", "fit",
    "load_dataset", "make_splits", "random_crop", "random_flip", "resolve_device", "train_and_evaluate", "train_architecture",
]
