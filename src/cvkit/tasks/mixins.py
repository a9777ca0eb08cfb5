"""What the three tasks share besides :class:`~cvkit.tasks.base.BaseTask`: counting the images each evaluation
scored, and refusing the checkpoint of another task.

Every split evaluated gets ``{split}_images`` in :meth:`report` (and so in metrics.json)::

    "val_images": {"scored": 32, "total": 33, "unreadable": ["data/val/007.jpg"]}

``total`` is the split as the data says it is (files left out while loading included), ``scored`` the
images the model was evaluated on, ``unreadable`` the files that could not be read. They differ when
files are unreadable, or when ``trainer.limit_val_batches`` / ``limit_test_batches`` evaluate a part of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from pytorch_lightning.trainer.states import RunningStage

from cvkit.console import print_image_counts
from cvkit.data.batches import Batch, Unreadable
from cvkit.errors import CvkitError
from cvkit.tasks.base import CHECKPOINT_KEY

# Lightning warns that a task's on_before_batch_transfer wins over the data module's: it is meant to.
warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule` but")
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


class CountsEvaluationImages:
    """Counts the images each val and test evaluation scores, from the batches themselves (unreadable ones are
    found in loader workers, and travel in :attr:`~cvkit.data.batches.Batch.unreadable`).

    Tasks call :meth:`finish_image_count` at the end of each evaluation, on every rank, and merge
    ``super().report()`` into their report and ``super().print_report()`` into their printout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counting: dict[str, ImageCount] = {}  # this rank's counts of the evaluation in progress
        self.image_counts: dict[str, dict[str, Any]] = {}  # the last evaluation of each split, for the report

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count an evaluation batch; hand the step the plain batch (None when no image of it could be read)."""
        if not isinstance(batch, Batch):
            return batch
        stage = EVALUATION_STAGES.get(self.trainer.state.stage)
        if stage is not None:
            count = self.counting.setdefault(stage, ImageCount())
            count.scored += len(batch[0]) if batch else 0
            count.unreadable += batch.unreadable
        return tuple(batch) if batch else None

    def finish_image_count(self, stage: str) -> ImageCount:
        """The count of the evaluation of `stage` that ends, over all ranks; kept for the report unless it was
        the sanity check."""
        count = gathered(self.counting.pop(stage, ImageCount()))
        if not self.trainer.sanity_checking:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None and datamodule.has_split(stage):
                report = count.as_report(datamodule.split_sizes()[stage], datamodule.unreadable_at_load(stage))
            else:
                report = count.as_report(None)
            self.image_counts[stage] = report
        return count

    def report(self) -> dict[str, Any]:
        return {**super().report(), **{f"{stage}_images": count for stage, count in self.image_counts.items()}}

    def print_report(self) -> None:
        super().print_report()
        print_image_counts(self.report())


def check_checkpoint_task(recorded: Mapping[str, Any], kind: str, key: str, path: str | Path) -> None:
    """Refuse the checkpoint at `path` (config `key`) when its run record says it was trained for another task
    than `kind`."""
    trained_for = recorded.get("task")
    if trained_for is not None and trained_for != kind:
        raise CvkitError(
            f"{key}: {path} is a {trained_for} checkpoint, but task={kind}: use a {kind} checkpoint, or "
            f"task={trained_for} with {trained_for} data"
        )


class RefusesOtherTasksCheckpoints:
    """Refuses to resume or evaluate (``ckpt_path=``) a checkpoint written by another task, before its
    weights are loaded (Lightning's own error would be a traceback about missing keys)."""

    kind: str

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        path = getattr(self.trainer, "ckpt_path", None) or "the checkpoint"
        check_checkpoint_task(checkpoint.get(CHECKPOINT_KEY, {}), self.kind, "ckpt_path", path)
        super().on_load_checkpoint(checkpoint)
