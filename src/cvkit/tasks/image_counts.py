"""The images each evaluation scored, counted from the batches themselves (unreadable ones are found in
loader workers, and travel in :attr:`~cvkit.data.batches.Batch.unreadable`); :class:`~cvkit.tasks.base.BaseTask`
keeps the counts.

Every split evaluated gets ``{split}_images`` in :meth:`report` (and so in metrics.json)::

    "val_images": {"scored": 32, "total": 33, "unreadable": ["data/val/007.jpg"]}

``total`` is the split as the data says it is (files left out while loading included), ``scored`` the
images the model was evaluated on, ``unreadable`` the files that could not be read. They differ when
files are unreadable, or when ``trainer.limit_val_batches`` / ``limit_test_batches`` evaluate a part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.distributed as dist
from pytorch_lightning.trainer.states import RunningStage

from cvkit.data.batches import Unreadable

EVALUATION_STAGES = {RunningStage.SANITY_CHECKING: "val", RunningStage.VALIDATING: "val", RunningStage.TESTING: "test"}


@dataclass
class ImageCount:
    """This rank's images of one evaluation of a split: how many were scored, and which could not be read."""

    scored: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)

    def as_report(self, split_size: int | None, unreadable_at_load: Sequence[str] = ()) -> dict[str, Any]:
        """``{"scored", "total", "unreadable"}`` of a split of `split_size` images (None: those evaluated)
        that left the files `unreadable_at_load` out while loading."""
        total = len(unreadable_at_load) + (self.scored + len(self.unreadable) if split_size is None else split_size)
        paths = [*unreadable_at_load, *(sample.path for sample in sorted(self.unreadable, key=lambda u: u.index))]
        return {"scored": self.scored, "total": total, "unreadable": paths}


def gathered(count: ImageCount) -> ImageCount:
    """The count over every rank (each evaluates its own stride of the split), on every rank; call on all."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return count
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (count.scored, count.unreadable))
    return ImageCount(sum(scored for scored, _ in parts), [sample for _, samples in parts for sample in samples])
