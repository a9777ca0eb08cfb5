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

__all__ = [
    "ClassScores",
    "ClassifierPredictor",
    "Detections",
    "DetectorPredictor",
    "Predictor",
    "SegmentationMask",
    "SegmenterPredictor",
]
