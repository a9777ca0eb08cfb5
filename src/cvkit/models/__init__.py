"""Models: timm backbones by family."""

from cvkit.models.backbones import FAMILIES, build_classifier, count_parameters

__all__ = ["FAMILIES", "build_classifier", "count_parameters"]
