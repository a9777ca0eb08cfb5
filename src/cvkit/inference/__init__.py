"""Using a trained model: predicting on images (:func:`load`) and exporting it (ONNX, TorchScript)."""

from cvkit.inference.predictor import (
    ClassifierPredictor,
    ClassScores,
    Detections,
    DetectorPredictor,
    Predictor,
    SegmentationMask,
    SegmenterPredictor,
    load,
)

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
