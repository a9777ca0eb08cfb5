"""Loss weights per class, from the ``task.class_weights`` spec and the train split's counts (labels for
classification, pixels for segmentation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cvkit.errors import CvkitError


def class_weights_from(spec: str | Sequence[float] | None, class_counts: np.ndarray) -> torch.Tensor | None:
    """Loss weights per class: None, "balanced" (n / (k * count_c), as scikit-learn), or explicit values."""
    if spec is None:
        return None
    if spec == "balanced":
        counts = np.maximum(class_counts, 1).astype(np.float64)
        return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
    if isinstance(spec, str) or len(spec) != len(class_counts):
        raise CvkitError(
            f"task.class_weights must be null, 'balanced' or a list of {len(class_counts)} numbers, got {spec!r}"
        )
    return torch.tensor([float(w) for w in spec], dtype=torch.float32)
