"""Models: timm backbones by family, the detectors and segmenters built on them, and one network builder
per task (:mod:`cvkit.models.networks`)."""

from cvkit.models.backbones import FAMILIES, build_classifier, count_parameters
from cvkit.models.networks import classification_network, detection_network, segmentation_network

__all__ = [
    "FAMILIES",
    "build_classifier",
    "classification_network",
    "count_parameters",
    "detection_network",
    "segmentation_network",
]
