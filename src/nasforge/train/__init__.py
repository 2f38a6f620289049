"""Training: data sets, augmentation, and one training step per model family shared by evaluators and final
training: :class:`~nasforge.train.loop.Stepper` for image classifiers (the ``train`` and ``supernet``
evaluators, ``nasforge train``), :class:`~nasforge.train.text.LMStepper` for language models (the
``supernet-lm`` evaluator, ``nasforge train`` of a recurrent cell)."""

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
