"""Models: timm backbones by family, the detectors and segmenters built on them, and one network builder
per task (:mod:`cvkit.models.networks`)."""

from cvkit.models.backbone_layers import BackboneLayers, backbone_layers
from cvkit.models.backbones import FAMILIES, build_classifier, count_parameters
from cvkit.models.networks import (
    NETWORKS,
    build_network,
    classification_network,
    detection_network,
    segmentation_network,
    task_network,
    trained_network,
)

__all__ = [
    "FAMILIES",
    "NETWORKS",
    "BackboneLayers",
    "backbone_layers",
    "build_classifier",
    "build_network",
    "classification_network",
    "count_parameters",
    "detection_network",
    "segmentation_network",
    "task_network",
    "trained_network",
]
