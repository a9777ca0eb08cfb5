"""Strong augmentation policies (torchvision's RandAugment, TrivialAugment, AutoAugment) as albumentations steps,
so that they go in ``data.train_transforms`` beside the other steps and keep cvkit's per-sample seeds."""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import torch
from torchvision.transforms import v2

from cvkit.errors import CvkitError

POLICIES = {
    "randaugment": v2.RandAugment,
    "trivialaugment": v2.TrivialAugmentWide,
    "autoaugment": v2.AutoAugment,
    "augmix": v2.AugMix,
}


class AugmentPolicy(A.ImageOnlyTransform):
    """torchvision's `policy` on a HxWxC uint8 image, its random choices drawn from a seed that the pipeline's
    own generator gives (so a sample's seed fixes them, as for every other step; an epoch replays after a
    resume). `options` go to the torchvision class, e.g. ``num_ops`` and ``magnitude`` of RandAugment.

        - _target_: cvkit.data.augment.AugmentPolicy
          policy: trivialaugment
    """

    def __init__(self, policy: str = "trivialaugment", p: float = 1.0, **options: Any) -> None:
        super().__init__(p=p)
        if policy not in POLICIES:
            raise CvkitError(f"AugmentPolicy policy={policy!r}: choose one of {sorted(POLICIES)}")
        self.policy = policy
        self.options = options
        self.transform = POLICIES[policy](**options)

    def get_params(self) -> dict[str, Any]:
        return {"seed": int(self.random_generator.integers(2**63 - 1))}

    def apply(self, img: np.ndarray, seed: int = 0, **params: Any) -> np.ndarray:
        chw = torch.from_numpy(np.ascontiguousarray(img if img.ndim == 3 else img[..., None])).permute(2, 0, 1)
        with torch.random.fork_rng(devices=[]):  # torchvision draws from torch's global generator
            torch.manual_seed(seed)
            out = self.transform(chw)
        out = out.permute(1, 2, 0).numpy()
        return out if img.ndim == 3 else out[..., 0]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("policy", "options")
