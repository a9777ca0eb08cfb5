"""Which of a network's parameters are its backbone, and how deep each one sits: the layers and stages of
timm's own grouping (each architecture's ``group_matcher``, the grouping timm's layer-wise LR decay uses),
found inside the network of every task: a classifier (all but its head), a detector's or instance segmenter's
feature pyramid (its timm body), a segmenter's encoder. What freezing and per-layer learning rates act on.

timm's ``param_groups_layer_decay`` does the grouping for a whole timm model only: the ``features_only``
networks inside the detectors and segmenters have no ``group_matcher``, so the matcher is taken from the same
architecture built on the meta device (no memory, no weights) and applied to their parameter names, which
are the architecture's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from timm.models import group_parameters
from torch import nn

from cvkit.models.detectors import PyramidLevels
from cvkit.models.segmenters import EncoderDecoder
from cvkit.models.weights import architecture_names, in_classifier, inner_timm_model, timm_architecture

# The normalisation layers with running statistics, which a frozen backbone keeps in eval mode (timm's
# BatchNormAct2d is a BatchNorm2d; the FrozenBatchNorm2d that task.model.freeze_bn puts in never updates them).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class BackboneLayers:
    """A network's timm backbone `name`, its `module` in the network: each of its parameters (named as in the
    network) with its layer (timm's fine groups) and stage (timm's coarse groups), both counted from 0 at the
    stem; `num_layers` counts the architecture's fine groups with its classifier head, the last one; `norms`
    gives the stage of each of its BatchNorm layers (named as in the network)."""

    name: str
    module: str
    layer: dict[str, int]
    stage: dict[str, int]
    num_layers: int
    norms: dict[str, int]

    @property
    def num_stages(self) -> int:
        """The stages of the backbone (timm's coarse groups: a ResNet's stem, then each stage), as
        ``backbone.freeze_stages`` counts them."""
        return max(self.stage.values()) + 1

    def modules_in(self, layer: int) -> str:
        """The modules of `layer` in a few words: the module holding all its parameters (``layer4.1``), else the
        top-level ones (``conv1, bn1``; ``blocks.11, norm``), named as in the backbone."""
        prefix = self.name_prefix()
        paths = [name[len(prefix) :].rsplit(".", 1)[0].split(".") for name, at in self.layer.items() if at == layer]
        common = []
        for parts in zip(*paths):
            if len(set(parts)) > 1:
                break
            common.append(parts[0])
        if common:
            return ".".join(common)
        tops = (".".join(path[:2]) if len(path) > 1 and path[1].isdigit() else path[0] for path in paths)
        return ", ".join(dict.fromkeys(tops))

    def name_prefix(self) -> str:
        """What the network's names of the backbone's parameters start with (``backbone.body.``; "" for a
        classifier)."""
        return self.module + "." if self.module else ""

    def freeze(self, network: nn.Module, stages: int | None, frozen: bool = True, norms: bool = True) -> None:
        """Freeze the first `stages` stages of this backbone in `network` (None: all of it): its parameters take
        no gradients and (with `norms`) its BatchNorm layers are in eval mode (their statistics kept and used), as
        a frozen backbone is used at inference. With `frozen` false, undo it: gradients again, BatchNorm in the
        network's mode. Lightning keeps these modes through validation (it restores each module's own)."""
        parameters, modules = dict(network.named_parameters()), dict(network.named_modules())
        for name, stage in self.stage.items():
            if stages is None or stage < stages:
                parameters[name].requires_grad_(not frozen)
        for name, stage in self.norms.items() if norms else ():
            if stages is None or stage < stages:
                modules[name].train(network.training and not frozen)


def timm_backbone(network: nn.Module) -> tuple[str, nn.Module] | None:
    """(name in `network`, module) of the timm network that is `network`'s backbone, or None (the classic U-Net,
    torchvision's COCO-trained detectors): the classifier itself, a feature pyramid's body or a segmenter's
    encoder; a ViT's ``features_only`` wrapper is looked through to the ViT it wraps."""
    if hasattr(network, "get_classifier") and hasattr(network, "pretrained_cfg"):
        return "", network
    for name, module in network.named_modules():
        if isinstance(module, PyramidLevels | EncoderDecoder):
            attribute = "body" if isinstance(module, PyramidLevels) else "encoder"
            found, body = f"{name}.{attribute}".lstrip("."), getattr(module, attribute)
            inner = inner_timm_model(body)
            return (found if inner is body else f"{found}.model"), inner
    return None


def backbone_layers(network: nn.Module) -> BackboneLayers | None:
    """The :class:`BackboneLayers` of `network` (None: it has no timm backbone, see :func:`timm_backbone`). A
    classifier's head (timm's ``pretrained_cfg["classifier"]``) is not part of its backbone; what timm groups with
    it (a MobileNetV3's ``conv_head``) is, in the last layer."""
    found = timm_backbone(network)
    if found is None:
        return None
    prefix, body = found
    name = body.pretrained_cfg["architecture"]
    architecture = timm_architecture(name)
    fine = group_parameters(architecture, architecture.group_matcher(coarse=False), reverse=True)
    coarse = group_parameters(architecture, architecture.group_matcher(coarse=True), reverse=True)
    num_layers = max(fine.values()) + 1
    names = architecture_names(body)
    qualified = (prefix + ".") if prefix else ""
    layer, stage = {}, {}
    for param_name, _ in body.named_parameters():
        own = names[param_name]
        if own not in fine:
            raise RuntimeError(f"{name}: cvkit cannot place {param_name} ({own}) in timm's grouping of its layers")
        if not in_classifier(own, body):
            layer[qualified + param_name] = fine[own]
            stage[qualified + param_name] = coarse[own]
    norms = {
        qualified + module_name: stage[f"{qualified}{module_name}.weight"]
        for module_name, module in body.named_modules()
        if isinstance(module, BATCH_NORMS) and f"{qualified}{module_name}.weight" in stage
    }
    return BackboneLayers(name, prefix, layer, stage, num_layers, norms)
