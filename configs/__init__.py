"""cvkit's Hydra configs, installed as the package ``cvkit.configs`` (searched as ``pkg://cvkit.configs``).

Importing it (Hydra does, to find the files) registers the resolver the configs use: ``${cvkit.hw:SIZE}`` is
``data.image_size`` as ``[height, width]``, one number being a square (``100`` -> ``[100, 100]``)."""

from typing import Any

from omegaconf import OmegaConf


def height_width(size: Any) -> Any:
    """`size` as ``[height, width]`` when it is one number; anything else as it is (the data module checks it)."""
    return [size, size] if isinstance(size, int) and not isinstance(size, bool) else size


OmegaConf.register_new_resolver("cvkit.hw", height_width, replace=True)
