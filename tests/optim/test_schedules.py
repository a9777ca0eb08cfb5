import pytest

from cvkit.errors import CvkitError
from cvkit.optim import Schedule, build_schedule


def test_warmup_is_linear_from_start_factor_to_peak() -> None:
    schedule = Schedule("constant", total_epochs=10, warmup_epochs=2, warmup_start_factor=0.1)
    assert schedule.factor(0.0) == pytest.approx(0.1)
    assert schedule.factor(1.0) == pytest.approx(0.55)
    assert schedule.factor(2.0) == pytest.approx(1.0)
    assert schedule.factor(9.0) == pytest.approx(1.0)


def test_cosine_reaches_min_lr_at_the_end() -> None:
    schedule = Schedule("cosine", total_epochs=10, warmup_epochs=0, min_lr_ratio=0.1)
    assert schedule.factor(0.0) == pytest.approx(1.0)
    assert schedule.factor(5.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule.factor(10.0) == pytest.approx(0.1)


def test_multistep_follows_goyal_milestones() -> None:
    schedule = Schedule("multistep", total_epochs=90, warmup_epochs=5, milestones=(30, 60, 80), gamma=0.1)
    assert [schedule.factor(e) for e in (10, 29.9, 30, 60, 85)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])


def test_poly_decay() -> None:
    schedule = Schedule("poly", total_epochs=4, power=2.0)
    assert schedule.factor(2.0) == pytest.approx(0.25)


def test_steps_count_in_fractional_epochs() -> None:
    schedule = Schedule("constant", total_epochs=4, warmup_epochs=1, warmup_start_factor=0.0)

    def step_factor(step: int) -> float:  # as the task's LambdaLR asks it, at 10 steps an epoch
        return schedule.factor(step / 10)

    assert [step_factor(s) for s in (0, 5, 10)] == pytest.approx([0.0, 0.5, 1.0])


def test_build_schedule_turns_min_lr_into_a_ratio() -> None:
    schedule = build_schedule({"name": "cosine", "warmup_epochs": 0, "min_lr": 0.01}, total_epochs=5, peak_lr=0.1)
    assert schedule.factor(5.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"name": "step"}, "scheduler.name"), ({"name": "cosine", "warmup_epochs": 11}, "warmup_epochs=11 is longer")],
)
def test_bad_schedules_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(CvkitError, match=message):
        Schedule(total_epochs=10, **kwargs)
