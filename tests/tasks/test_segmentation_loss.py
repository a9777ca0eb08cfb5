"""The segmentation losses on a tiny tensor: Dice and cross-entropy against hand-computed values, ignored
pixels taking no part in either, and ce+dice as their sum."""

import math

import pytest
import torch
from torch import nn

from cvkit.tasks.segmentation import SegmentationTask, dice_loss
from tests.helpers.tasks import task_arguments

IGNORE = 255
LN3 = math.log(3.0)
# One image of 2x2 pixels, 2 classes. Softmax probabilities (class 0, class 1) per pixel:
# (0,0): (1/4, 3/4), target 1;  (0,1): (3/4, 1/4), target 0;  (1,0): (1/2, 1/2), target 1;  (1,1): ignored.
LOGITS = torch.tensor([[[[0.0, LN3], [0.0, 5.0]], [[LN3, 0.0], [0.0, -5.0]]]])  # [N=1, C=2, H=2, W=2]
TARGETS = torch.tensor([[[1, 0], [1, IGNORE]]])
# Soft Dice per class, with the smoothing 1 in numerator and denominator, over the 3 counted pixels:
# class 0: (2 * 3/4 + 1) / ((1/4 + 3/4 + 1/2) + 1 + 1) = 5/7; class 1: (2 * (3/4 + 1/2) + 1) / (3/2 + 2 + 1) = 7/9
DICE = 1 - (5 / 7 + 7 / 9) / 2  # = 16/63
CROSS_ENTROPY = -(math.log(3 / 4) + math.log(3 / 4) + math.log(1 / 2)) / 3  # the mean over the counted pixels


def task(loss: str, ignore_index: int | None = IGNORE) -> SegmentationTask:
    return SegmentationTask(
        **task_arguments(nn.Identity(), ["background", "cell"]),
        ignore_index=ignore_index,
        loss=loss,
        class_weights=None,
        log_images=0,
    )


def changed_at_the_ignored_pixel(logits: torch.Tensor) -> torch.Tensor:
    other = logits.clone()
    other[0, :, 1, 1] = torch.tensor([-7.0, 9.0])
    return other


def test_dice_loss_equals_the_hand_computed_value() -> None:
    assert dice_loss(LOGITS, TARGETS, IGNORE).item() == pytest.approx(DICE, abs=1e-6)


def test_dice_averages_over_the_classes_present_in_the_targets() -> None:
    only_ones = torch.tensor([[[1, 1], [1, IGNORE]]])
    # class 1 alone: (2 * (3/4 + 1/4 + 1/2) + 1) / (3/2 + 3 + 1) = 4 / 5.5
    assert dice_loss(LOGITS, only_ones, IGNORE).item() == pytest.approx(1 - 4 / 5.5, abs=1e-6)


def test_ignored_pixels_take_no_part() -> None:
    other = changed_at_the_ignored_pixel(LOGITS)
    assert not torch.equal(other, LOGITS)
    for name in ("ce", "dice", "ce+dice"):
        assert task(name).loss(other, TARGETS).item() == pytest.approx(
            task(name).loss(LOGITS, TARGETS).item(), abs=1e-7
        )
    # The same pixel labelled instead of ignored does count: the check above could fail.
    labelled = torch.tensor([[[1, 0], [1, 0]]])
    assert dice_loss(other, labelled, IGNORE).item() != pytest.approx(dice_loss(LOGITS, labelled, IGNORE).item())
    # Without an ignore index every pixel counts (here the 4th is class 0).
    assert task("dice", ignore_index=None).loss(LOGITS, labelled).item() == pytest.approx(
        dice_loss(LOGITS, labelled, IGNORE).item(), abs=1e-7
    )


def test_cross_entropy_leaves_out_the_ignored_pixels() -> None:
    assert task("ce").loss(LOGITS, TARGETS).item() == pytest.approx(CROSS_ENTROPY, abs=1e-6)


def test_ce_plus_dice_is_their_sum() -> None:
    total = task("ce+dice").loss(LOGITS, TARGETS).item()
    assert total == pytest.approx(task("ce").loss(LOGITS, TARGETS).item() + task("dice").loss(LOGITS, TARGETS).item())
    assert total == pytest.approx(CROSS_ENTROPY + DICE, abs=1e-6)


def test_dice_of_a_batch_with_every_pixel_ignored_is_zero_with_a_gradient() -> None:
    logits = LOGITS.clone().requires_grad_(True)
    loss = dice_loss(logits, torch.full((1, 2, 2), IGNORE), IGNORE)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
