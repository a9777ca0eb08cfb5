"""What using a trained model needs per task: its predictor, its prediction writer and its exported form.
``cvkit.load``, ``cvkit-predict`` and ``cvkit-export`` read them from here; the network of each task is
:data:`cvkit.models.networks.NETWORKS`'s. Training never imports this module."""

from __future__ import annotations

from dataclasses import dataclass

from cvkit.errors import CvkitError
from cvkit.inference.forms import CLASSIFIER_FORM, DETECTOR_FORM, INSTANCE_SEGMENTER_FORM, SEGMENTER_FORM, ExportForm
from cvkit.inference.predictor import ClassifierPredictor, DetectorPredictor, Predictor, SegmenterPredictor
from cvkit.inference.writers import ClassificationWriter, DetectionWriter, PredictionWriter, SegmentationWriter


@dataclass(frozen=True)
class InferenceKind:
    """How one task's trained network is used: its predictor, its prediction writer and its exported form."""

    predictor: type[Predictor]
    writer: type[PredictionWriter]
    export: ExportForm


INFERENCE_KINDS: dict[str, InferenceKind] = {
    "classification": InferenceKind(ClassifierPredictor, ClassificationWriter, CLASSIFIER_FORM),
    "detection": InferenceKind(DetectorPredictor, DetectionWriter, DETECTOR_FORM),
    "segmentation": InferenceKind(SegmenterPredictor, SegmentationWriter, SEGMENTER_FORM),
    "instance_segmentation": InferenceKind(DetectorPredictor, DetectionWriter, INSTANCE_SEGMENTER_FORM),
}


def inference_kind(task: str, where: str = "task") -> InferenceKind:
    """The row of task `task`; a CvkitError starting with `where` for a task cvkit does not know."""
    if task not in INFERENCE_KINDS:
        raise CvkitError(f"{where} is a {task!r} model; cvkit knows the tasks {list(INFERENCE_KINDS)}")
    return INFERENCE_KINDS[task]
