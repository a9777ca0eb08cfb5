"""Where a backbone's weights come from: a local file (a timm or torchvision file, a safetensors file, a cvkit
checkpoint of any task: its names matched by rule), the local hub cache, or the hub (checked first)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import zipfile
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors
from torch import nn

from cvkit.errors import CvkitError

log = logging.getLogger(__name__)
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


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a safetensors file, or a ``torch.save`` dict of tensors, or one under its
    ``state_dict`` (Lightning's, cvkit's and timm's checkpoints) or ``model`` key (torchvision's references)."""
    if path.suffix == ".safetensors":
        return load_safetensors(str(path))
    content = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    for key in ("state_dict", "model"):
        if isinstance(content.get(key), dict):
            content = content[key]
            break
    return {key: value for key, value in content.items() if isinstance(value, torch.Tensor)}


def matching_prefix(source: Iterable[str], target: Collection[str]) -> str | None:
    """The prefix which, taken off the `source` names, turns the most of them into `target` names (the fewest
    characters among equals), or None when no source name ends in a target name. A classifier's weights
    (``model.layer1.0.conv1.weight`` in a cvkit checkpoint) match a detector's backbone (``layer1.0.conv1.weight``)
    under ``model.``, a detector's (``model.backbone.body.layer1...``) under ``model.backbone.body.``."""
    counts: Counter[str] = Counter()
    for key in source:
        parts = key.split(".")
        for start in range(len(parts)):
            if ".".join(parts[start:]) in target:
                counts[".".join(parts[:start]) + ("." if start else "")] += 1
    return min(counts, key=lambda prefix: (-counts[prefix], len(prefix))) if counts else None


@dataclass(frozen=True)
class WeightsReport:
    """What a weights file gave a timm network: the tensors `loaded` of the network's `total` (its classifier
    `head`, when it has one, is not among them), those `skipped` for their shape (``name: file shape -> network
    shape``), the network's `missing` ones, and the file's `unused` count; its names matched under `prefix`."""

    loaded: int
    total: int
    skipped: list[str]
    missing: list[str]
    unused: int
    prefix: str
    head: str | None

    def line(self, path: Path, name: str) -> str:
        under = f" (the file's names under {self.prefix!r})" if self.prefix else ""
        head = f"; its head ({self.head}) starts anew for your classes" if self.head else ""
        return (
            f"backbone.weights={path}: loaded {self.loaded} of {name}'s {self.total} tensors{under}{head}; "
            f"skipped for shape {len(self.skipped)} {self.skipped[:5]}; missing {len(self.missing)} "
            f"{self.missing[:5]}; {self.unused} tensors of the file unused"
        )


def load_weights_file(model: nn.Module, path: Path, name: str) -> WeightsReport:
    """Load the weights file `path` into the backbone of timm network `name` (a classifier less its head, which
    is the task's, or a ``features_only`` network), the file's names matched by :func:`matching_prefix` and
    passed through the architecture's own checkpoint filter where it has one (a ViT's resizes its position
    embedding to the model's grid). Tensors of another shape are skipped and named, as detectron2 and MMDetection
    do; the report is logged. A CvkitError when no name matches (saying what the file's names and the network's
    look like) or no matched tensor has its shape (the weights of another variant)."""
    target = inner_timm_model(model)
    names = architecture_names(target)  # the network's names -> its architecture's, which weights files use
    own = {names[key]: value for key, value in target.state_dict().items() if not in_classifier(names[key], target)}
    source = read_tensors(path)
    prefix = matching_prefix(source, own)
    if prefix is None:
        raise CvkitError(
            f"backbone.weights: none of the {len(source)} tensors of {path} is one of {name}'s (the file has names "
            f"like {sorted(source)[:2]}, {name} like {sorted(own)[:2]}); give weights of a {name}: a timm or "
            "torchvision file, or a cvkit checkpoint of a run with this backbone"
        )
    matched = {key[len(prefix) :]: value for key, value in source.items() if key.startswith(prefix)}
    matched = {key: value for key, value in matched.items() if key in own}
    filter_fn = getattr(sys.modules[type(target).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None and hasattr(target, "group_matcher"):  # a whole model of the architecture's module
        matched = filter_fn(matched, target)
    fits = {key: value for key, value in matched.items() if key in own and value.shape == own[key].shape}
    skipped = [
        f"{key}: {list(value.shape)} -> {list(own[key].shape)}" for key, value in matched.items() if key not in fits
    ]
    if not fits:
        raise CvkitError(
            f"backbone.weights: {len(matched)} tensors of {path} are named as {name}'s but none has its shape "
            f"({skipped[0]}, ...): are they the weights of another variant?"
        )
    network_name = {architecture: key for key, architecture in names.items()}
    target.load_state_dict({network_name[key]: value for key, value in fits.items()}, strict=False)
    head = timm_architecture(target.pretrained_cfg["architecture"]).pretrained_cfg.get("classifier")
    report = WeightsReport(
        loaded=len(fits),
        total=len(own),
        skipped=skipped,
        missing=sorted(set(own) - set(fits)),
        unused=len(source) - len(matched),
        prefix=prefix,
        head=head if len(own) < len(names) else None,
    )
    (log.warning if report.missing or report.skipped else log.info)(report.line(path, name))
    return report


@functools.lru_cache(maxsize=8)
def timm_architecture(name: str) -> nn.Module:
    """timm's model `name` built on the meta device (no memory, no weights, a tenth of a second): its names, its
    classifier's name and its grouping of layers."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def architecture_names(network: nn.Module) -> dict[str, str]:
    """The name in its timm architecture of each state-dict entry of `network` (a timm model, or a
    ``features_only`` wrapper that flattened some names: a ResNetV2's ``stages_0.blocks.0...`` is
    ``stages.0.blocks.0...``), dots and underscores matched alike."""
    architecture = timm_architecture(network.pretrained_cfg["architecture"])
    canonical = {name.replace(".", "_"): name for name in architecture.state_dict()}
    return {name: canonical.get(name.replace(".", "_"), name) for name in network.state_dict()}


def in_classifier(name: str, network: nn.Module) -> bool:
    """Whether `name` (an architecture name) belongs to the classifier head of `network`'s timm architecture (timm's
    ``pretrained_cfg["classifier"]``: ``fc``, ``head``, ``head.fc``, ``classifier``)."""
    head = timm_architecture(network.pretrained_cfg["architecture"]).pretrained_cfg.get("classifier")
    return bool(head) and name.startswith(f"{head}.")


def inner_timm_model(network: nn.Module) -> nn.Module:
    """The timm model a ``features_only`` wrapper holds whole (timm's ``FeatureGetterNet`` around a ViT), else
    `network` itself: the module whose parameter names are the architecture's."""
    inner = getattr(network, "model", None)
    return inner if hasattr(inner, "group_matcher") else network
