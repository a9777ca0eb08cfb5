"""cvkit: Hydra + PyTorch Lightning training for image classification, detection and segmentation."""

__version__ = "0.1.0"
