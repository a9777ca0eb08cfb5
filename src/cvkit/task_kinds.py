"""The task table: per task, the network builder, the predictor, the prediction writer and the exported
form. Everything outside the training task classes that depends on the task reads it from here, so a new
task is one row (and the classes it names; see docs/architecture.md).

It imports no training code: ``cvkit.load`` uses it without Lightning's trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvkit.errors import CvkitError
from cvkit.inference.forms import CLASSIFIER_FORM, DETECTOR_FORM, SEGMENTER_FORM, ExportForm
from cvkit.inference.predictor import ClassifierPredictor, DetectorPredictor, Predictor, SegmenterPredictor
from cvkit.inference.writers import ClassificationWriter, DetectionWriter, PredictionWriter, SegmentationWriter
from cvkit.models.networks import NetworkBuilder, classification_network, detection_network, segmentation_network


@dataclass(frozen=True)
class TaskKind:
    """What cvkit needs of one task outside its training class (``cvkit.tasks``)."""

    name: str
    build_network: NetworkBuilder
    predictor: type[Predictor]
    writer: type[PredictionWriter]
    export: ExportForm
    input_size: str  # the settings that set the size the network sees (named in advice to the user)


TASK_KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        TaskKind(
            "classification",
            classification_network,
            ClassifierPredictor,
            ClassificationWriter,
            CLASSIFIER_FORM,
            "data.image_size",
        ),
        TaskKind(
            "detection",
            detection_network,
            DetectorPredictor,
            DetectionWriter,
            DETECTOR_FORM,
            "task.model.min_size and max_size",
        ),
        TaskKind(
            "segmentation",
            segmentation_network,
            SegmenterPredictor,
            SegmentationWriter,
            SEGMENTER_FORM,
            "data.image_size",
        ),
    )
}


def task_kind(name: str, where: str = "task") -> TaskKind:
    """The table row of task `name`; a CvkitError starting with `where` for a task cvkit does not know."""
    if name not in TASK_KINDS:
        raise CvkitError(f"{where} is a {name!r} model; cvkit knows the tasks {list(TASK_KINDS)}")
    return TASK_KINDS[name]
