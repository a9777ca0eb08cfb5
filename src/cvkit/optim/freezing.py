"""When the backbone trains (the ``backbone.freeze*`` settings), as a pure function of the epoch.

Example: ``freeze_epochs=2, unfreeze_lr_start=0.1, unfreeze_warmup_epochs=1``: the backbone is frozen in
epochs 0 and 1 (LR multiplier 0), trains from epoch 2 at 0.1 of its scheduled LR, 0.55 halfway through epoch
2, all of it from epoch 3 on. The multiplier is on top of the run's schedule (warmup, cosine, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cvkit.config import FREEZE_KEYS
from cvkit.errors import CvkitError


@dataclass(frozen=True)
class Freezing:
    """The backbone frozen for the whole run (`always`), or for its first `epochs` epochs and then trained with
    its LR rising linearly from `unfreeze_lr_start` of the scheduled LR to all of it over
    `unfreeze_warmup_epochs`, so that the gradients of a still-untrained head do not wreck it; the first
    `stages` of timm's coarse groups (a ResNet's: the stem, then each stage) frozen throughout. Frozen means no
    gradients (no optimizer state) and BatchNorm in eval mode (its statistics kept and used)."""

    always: bool = False
    epochs: int = 0
    stages: int = 0
    unfreeze_lr_start: float = 0.1
    unfreeze_warmup_epochs: float = 1.0

    @classmethod
    def from_config(cls, backbone: Mapping[str, Any], max_epochs: int) -> Freezing:
        """The Freezing of a backbone config (its :data:`FREEZE_KEYS`; absent ones at their defaults), checked
        against a run of `max_epochs`."""
        fields = dict(zip(FREEZE_KEYS, ("always", "epochs", "stages", "unfreeze_lr_start", "unfreeze_warmup_epochs")))
        # Each given value as the type of its field's default (the defaults are the dataclass's alone).
        freezing = cls(
            **{
                field: type(getattr(cls, field))(backbone[key])
                for key, field in fields.items()
                if backbone.get(key) is not None
            }
        )
        freezing.check(max_epochs)
        return freezing

    def check(self, max_epochs: int) -> None:
        """A CvkitError naming the setting that cannot be, for a run of `max_epochs`."""
        if self.always and self.epochs:
            raise CvkitError(
                f"backbone.freeze=true freezes the backbone for the whole run and backbone.freeze_epochs="
                f"{self.epochs} for its first epochs: give one of them"
            )
        if self.epochs < 0 or self.stages < 0:
            raise CvkitError("backbone.freeze_epochs and backbone.freeze_stages must be >= 0")
        if self.epochs >= max_epochs:
            raise CvkitError(
                f"backbone.freeze_epochs={self.epochs} leaves no epoch of the {max_epochs} (trainer.max_epochs) to "
                "train the backbone in; freeze it for fewer epochs, or set backbone.freeze=true to keep it frozen"
            )
        if not 0.0 <= self.unfreeze_lr_start <= 1.0 or self.unfreeze_warmup_epochs < 0:
            raise CvkitError(
                f"backbone.unfreeze_lr_start={self.unfreeze_lr_start} must be in [0, 1] and "
                f"backbone.unfreeze_warmup_epochs={self.unfreeze_warmup_epochs} >= 0"
            )

    @property
    def active(self) -> bool:
        """Whether any part of the backbone is ever frozen."""
        return self.always or self.epochs > 0 or self.stages > 0

    def frozen(self, epoch: int) -> bool:
        """Whether the whole backbone is frozen in `epoch` (counted from 0)."""
        return self.always or epoch < self.epochs

    def lr_factor(self, epoch: float) -> float:
        """The backbone's LR multiplier (of its scheduled LR) at fractional `epoch`."""
        if self.frozen(int(epoch)):
            return 0.0
        if not self.epochs or not self.unfreeze_warmup_epochs:
            return 1.0
        progress = min((epoch - self.epochs) / self.unfreeze_warmup_epochs, 1.0)
        return self.unfreeze_lr_start + (1.0 - self.unfreeze_lr_start) * progress

    def describe(self) -> str:
        """One line for the run summary."""
        parts = []
        if self.always:
            parts.append("frozen for the whole run")
        elif self.epochs:
            epochs = "epoch 0" if self.epochs == 1 else f"epochs 0-{self.epochs - 1}"
            parts.append(
                f"frozen in {epochs}, then from {self.unfreeze_lr_start:g}x its LR to all of it over "
                f"{self.unfreeze_warmup_epochs:g} epochs"
            )
        if self.stages and not self.always:
            parts.append(f"its first {self.stages} stages (timm's coarse groups) frozen throughout")
        return "; ".join(parts)
