import pickle

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory

from cvkit.data.batches import Batch, Unreadable

UNREADABLE = (Unreadable(3, "val/003.jpg", image_id=12),)


def test_a_batch_unpacks_as_before_and_keeps_its_unreadable_samples_across_processes() -> None:
    batch = Batch((torch.ones(2, 3), torch.tensor([0, 1])), UNREADABLE)
    images, labels = batch
    assert images.shape == (2, 3) and labels.tolist() == [0, 1]
    copied = pickle.loads(pickle.dumps(batch))  # as loader workers send it
    assert isinstance(copied, Batch) and copied.unreadable == UNREADABLE and torch.equal(copied[0], images)
    empty = Batch((), UNREADABLE)
    assert not empty and empty.unreadable == UNREADABLE


def test_pinning_memory_keeps_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor, *args: pinned.append(tensor) or tensor)
    batch = pin_memory(Batch(([torch.ones(3)], [{"boxes": torch.zeros(0, 4)}]), UNREADABLE))
    assert isinstance(batch, Batch) and batch.unreadable == UNREADABLE and len(pinned) == 2
