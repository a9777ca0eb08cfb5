"""Using a trained model: the per-task predictors (:mod:`~cvkit.inference.predictor`), rebuilding one from a
checkpoint (:func:`cvkit.inference.loading.load`, also ``cvkit.load``), their output files
(:mod:`~cvkit.inference.writers`) and exporting the network (:mod:`~cvkit.inference.export`)."""

from cvkit.inference.predictor import (
    ClassifierPredictor,
    ClassScores,
    Detections,
    DetectorPredictor,
    Predictor,
    SegmentationMask,
    SegmenterPredictor,
)


def __getattr__(name: str) -> object:
    """``cvkit.inference.load``, imported on first use (it reads the task table, which imports this package)."""
    if name == "load":
        from cvkit.inference.loading import load

        return load
    raise AttributeError(f"module 'cvkit.inference' has no attribute {name!r}")


__all__ = [
    "ClassScores",
    "ClassifierPredictor",
    "Detections",
    "DetectorPredictor",
    "Predictor",
    "SegmentationMask",
    "SegmenterPredictor",
    "load",
]
