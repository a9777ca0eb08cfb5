"""Where a backbone's weights come from: a local file, the local hub cache, or the hub (checked first)."""

from __future__ import annotations

import os
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open

from cvkit.errors import CvkitError

HUB_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub opens within `timeout` seconds."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def pretrained_file(name: str, pretrained: bool, weights: str | None) -> str | None:
    """The local weights file to load for timm model `name`, or None for no file.

    ``weights`` (a path) wins over ``pretrained``. For ``pretrained`` the hub cache is used when it has
    the file; otherwise the hub must answer within seconds, or this fails at once with what to do
    instead (timm's own download would retry for about a minute before failing).
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CvkitError(f"backbone.weights: {path} does not exist (expected a {'/'.join(WEIGHT_SUFFIXES)} file)")
        check_weights_file(path)
        return str(path)
    if not pretrained:
        return None
    config = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(config, "hf_hub_id", None) if config else None
    if not hub_id:
        raise CvkitError(f"backbone.pretrained=true: timm has no pretrained weights for {name!r}")
    for filename in HUB_FILES:
        cached = try_to_load_from_cache(hub_id, filename)
        if isinstance(cached, str):
            return cached
    if not hub_reachable():
        raise CvkitError(
            f"backbone.pretrained=true: the weights of {name} ({hub_id}) are not in the local cache and the "
            "Hugging Face hub cannot be reached. Download them where there is internet (they are cached in "
            "HF_HOME), or set backbone.weights=/path/to/weights.safetensors, or backbone.pretrained=false."
        )
    return None


def check_weights_file(path: Path) -> None:
    """CvkitError naming ``backbone.weights`` unless `path` holds weights: a safetensors file (its header is
    read), or a ``torch.save`` file of a state dict (memory-mapped where it can be, so tensors are not read)."""
    expected = "expected a state dict saved with torch.save (.pth, .pt, .bin) or a .safetensors file"
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt"):
                return
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as err:  # the pickle, zip and safetensors readers each fail in their own ways
        raise CvkitError(
            f"backbone.weights: {path} is not a weights file ({type(err).__name__}: {err}); {expected}"
        ) from err
    if not isinstance(content, dict):
        raise CvkitError(f"backbone.weights: {path} holds a {type(content).__name__}, not a state dict; {expected}")
