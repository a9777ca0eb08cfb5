import math

import pytest

from cvkit.errors import CvkitError
from cvkit.optim import LRPlan, scale_lr


@pytest.mark.parametrize(
    ("rule", "expected"), [("linear", 0.1 * 1024 / 256), ("sqrt", 0.1 * math.sqrt(4)), ("none", 0.1)]
)
def test_scale_lr_rules(rule: str, expected: float) -> None:
    assert scale_lr(0.1, 256, 1024, rule) == pytest.approx(expected)


def test_plan_global_batch_counts_devices_nodes_and_accumulation() -> None:
    plan = LRPlan(
        base_lr=0.1,
        base_batch_size=256,
        per_device_batch_size=32,
        world_size=8,
        accumulate_grad_batches=4,
        lr_scaling="linear",
    )
    assert plan.global_batch_size == 1024
    assert plan.effective_lr == pytest.approx(0.4)
    assert plan.formula() == "lr = 0.1 x 1024 / 256 = 0.4 (linear scaling)"
    assert plan.as_dict()["effective_lr"] == pytest.approx(0.4)


def test_accumulation_and_devices_are_interchangeable() -> None:
    one_process = LRPlan(0.1, 256, 64, world_size=1, accumulate_grad_batches=2, lr_scaling="linear")
    two_processes = LRPlan(0.1, 256, 64, world_size=2, accumulate_grad_batches=1, lr_scaling="linear")
    assert one_process.global_batch_size == two_processes.global_batch_size == 128
    assert one_process.effective_lr == two_processes.effective_lr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.1, 256, 64, "cubic"), "lr_scaling"),
        ((0.1, 0, 64, "linear"), "base_batch_size"),
        ((-1.0, 256, 64, "linear"), "optimizer.lr"),
    ],
)
def test_bad_scaling_inputs_name_the_key(args: tuple, message: str) -> None:
    with pytest.raises(CvkitError, match=message):
        scale_lr(*args)
