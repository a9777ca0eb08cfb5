"""cvkit: Hydra + PyTorch Lightning training for image classification, detection and segmentation."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``cvkit.load(ckpt_path)``: the trained model of a checkpoint (see :mod:`cvkit.inference.loading`)."""
    if name == "load":
        from cvkit.inference.loading import load

        return load
    raise AttributeError(f"module 'cvkit' has no attribute {name!r}")
