"""Batches that also name the samples that could not be read, so that the task can count them.

A dataset returns an :class:`Unreadable` for a sample whose file cannot be decoded (unless
``data.strict``); the collate functions drop those samples from the batch and keep them in
:attr:`Batch.unreadable`. Loader workers are other processes: this is how the task learns of them::

    batch = Batch(([image], [target]), unreadable=[Unreadable(3, "val/003.jpg", image_id=12)])
    images, targets = batch        # unpacks as the plain batch
    batch.unreadable               # (Unreadable(index=3, path='val/003.jpg', image_id=12),)
    Batch((), unreadable=[...])    # no sample could be read: an empty (falsy) batch
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from lightning_utilities.core.apply_func import apply_to_collection

from cvkit.data.images import CorruptImageError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Unreadable:
    """A sample of a split that could not be read: its index, the file at fault, and (detection) the id of
    its image in the ground truth."""

    index: int
    path: str
    image_id: int | None = None


class Batch(tuple):
    """A collated batch (a tuple of its parts, as before) and the samples of it that could not be read."""

    unreadable: tuple[Unreadable, ...]

    def __new__(cls, parts: Iterable[Any] = (), unreadable: Iterable[Unreadable] = ()) -> Batch:
        batch = super().__new__(cls, parts)
        batch.unreadable = tuple(unreadable)
        return batch

    def __reduce__(self) -> tuple[Any, ...]:  # across loader worker processes
        return type(self), (tuple(self), self.unreadable)

    def pin_memory(self) -> Batch:
        """The batch with its tensors in pinned memory (the loader's ``pin_memory`` would make it a list)."""
        return Batch(apply_to_collection(tuple(self), torch.Tensor, torch.Tensor.pin_memory), self.unreadable)

    def to(self, *args: Any, **kwargs: Any) -> Batch:
        """The batch with its tensors moved as ``Tensor.to(*args, **kwargs)`` moves them: Lightning moves any
        object with a ``to`` method this way, so a batch reaches the task's steps still naming its unreadable
        samples (a plain tuple's copy would lose them)."""
        return Batch(apply_to_collection(tuple(self), torch.Tensor, lambda t: t.to(*args, **kwargs)), self.unreadable)


def read_or_skip(
    read: Callable[[], T], index: int, strict: bool, image_id: int | None = None, what: str = "image"
) -> T | Unreadable:
    """``read()`` for sample `index`; when it raises :class:`CorruptImageError`, raise it under `strict`, else
    warn naming the file (an "image" or a "mask": `what`) and its reason and return the sample's
    :class:`Unreadable` (with its detection `image_id`)."""
    try:
        return read()
    except CorruptImageError as err:
        if strict:
            raise
        log.warning("skipping unreadable %s %s: %s", what, err.path, err.reason)
        return Unreadable(index, str(err.path), image_id)


def split_unreadable(samples: Sequence[Any]) -> tuple[list[Any], list[Unreadable]]:
    """The samples of a batch that could be read, and those that could not."""
    kept = [sample for sample in samples if not isinstance(sample, Unreadable)]
    return kept, [sample for sample in samples if isinstance(sample, Unreadable)]


def finish_batch(batch: Any, finish_images: Callable[[Any], Any]) -> Any:
    """`batch` with its uint8 images (a tensor, or a list of them) passed through `finish_images`; a batch
    already finished, or an empty one, as it is."""
    if not batch:
        return batch
    images, *rest = batch
    first = images if isinstance(images, torch.Tensor) else next(iter(images), None)
    if first is None or first.dtype != torch.uint8:
        return batch
    parts = (finish_images(images), *rest)
    return Batch(parts, batch.unreadable) if isinstance(batch, Batch) else parts


@dataclass(frozen=True)
class FinishingCollate:
    """A collate function whose batches leave the loader worker finished (:func:`finish_batch`): for training
    on a CPU, where finishing them in the main process would compete with the training."""

    collate: Callable[[list[Any]], Any]
    finish_images: Callable[[Any], Any]

    def __call__(self, samples: list[Any]) -> Any:
        return finish_batch(self.collate(samples), self.finish_images)
