"""The backbone's part in a task's training: which of the network's parameters are its backbone (and at what
depth), which of them stay frozen for the whole run, and when a backbone frozen for its first epochs unfreezes.

Not Lightning's ``BackboneFinetuning`` callback: it freezes BatchNorm by ``track_running_stats=False`` (batch
statistics in training, the stale running ones at evaluation), puts the unfrozen parameters in a new optimizer
group that the LR scheduler does not scale, and steps their LR once an epoch.
"""

from __future__ import annotations

from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from cvkit.errors import CvkitError
from cvkit.models import BackboneLayers, backbone_layers
from cvkit.optim import Freezing


class BackboneTraining:
    """How `model`'s timm backbone trains under `freezing`. Built with the task, before the optimizer and DDP see
    the parameters: those frozen for the whole run are frozen then, so that both leave them out (their BatchNorm
    layers go to eval mode when training starts: Lightning warns of modules in eval mode before that)."""

    def __init__(self, model: nn.Module, freezing: Freezing) -> None:
        self.layers: BackboneLayers | None = backbone_layers(model)
        self.freezing = freezing
        self.frozen = False  # frozen for backbone.freeze_epochs, until the epoch that unfreezes it
        if not freezing.active:
            return
        if self.layers is None:
            raise CvkitError(
                "backbone.freeze*: this network has no timm backbone to freeze (the classic U-Net, torchvision's "
                "COCO-trained detectors); leave backbone.freeze=false, freeze_epochs=0 and freeze_stages=0"
            )
        if freezing.stages > self.layers.num_stages:
            raise CvkitError(
                f"backbone.freeze_stages={freezing.stages}: {self.layers.name} has {self.layers.num_stages} stages "
                "(timm's coarse groups); give at most that many, or backbone.freeze=true to freeze all of it"
            )
        if freezing.always or freezing.stages:
            self.layers.freeze(model, None if freezing.always else freezing.stages, norms=False)

    def start_epoch(self, model: nn.Module, epoch: int) -> None:
        """Freeze the backbone in the epochs of ``backbone.freeze_epochs`` and unfreeze it at the epoch after (once,
        announced); keep the BatchNorm layers of its frozen stages in eval mode. A function of the epoch, so a
        resumed run is in the same phase as the run it continues."""
        freezing = self.freezing
        if self.layers is None or not freezing.active:
            return
        if freezing.frozen(epoch):
            self.layers.freeze(model, None)
            self.frozen = True
            return
        if self.frozen:
            self.layers.freeze(model, None, frozen=False)
            self.frozen = False
            rank_zero_info(
                f"epoch {epoch}: the backbone is unfrozen; its LR rises from {freezing.unfreeze_lr_start:g}x to its "
                f"scheduled value over {freezing.unfreeze_warmup_epochs:g} epochs"
            )
        if freezing.stages:
            self.layers.freeze(model, freezing.stages)
