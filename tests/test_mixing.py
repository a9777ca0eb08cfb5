"""Strong augmentation for classification: torchvision's policies as albumentations steps (cvkit.data.augment),
and Mixup / CutMix of training batches (timm's Mixup, ``task.mixup``) with label smoothing."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from timm.data import Mixup

from cvkit.data.augment import POLICIES, AugmentPolicy
from cvkit.data.transforms import seed_pipeline
from cvkit.errors import CvkitError
from tests.helpers.callbacks import StopAfterEpochs, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint
from tests.helpers.cli import train_into
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics
from tests.helpers.presets import LEARNING_DIGITS
from tests.helpers.tasks import configured_task

# Digits at 16 px with TrivialAugment after the resize, Mixup and CutMix, label smoothing.
STRONG = [
    *LEARNING_DIGITS,
    "data.train_transforms=[{_target_:albumentations.Resize,height:16,width:16},"
    "{_target_:cvkit.data.augment.AugmentPolicy,policy:trivialaugment}]",
    "task.mixup.mixup_alpha=0.2",
    "task.mixup.cutmix_alpha=1.0",
    "task.label_smoothing=0.1",
]


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    """A real image: one of scikit-learn's digits, 32x32 RGB uint8."""
    from sklearn.datasets import load_digits

    digit = np.round(load_digits().images[5] * (255 / 16)).astype(np.uint8)
    return np.repeat(np.kron(digit, np.ones((4, 4), np.uint8))[..., None], 3, axis=2)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_a_policy_is_torchvisions_under_the_seed_the_pipeline_draws(policy: str, digit: np.ndarray) -> None:
    pipeline = A.Compose([AugmentPolicy(policy)])
    outputs = []
    for sample_seed in (4, 4, 5):
        seed_pipeline(pipeline, sample_seed)
        outputs.append(pipeline(image=digit)["image"])
    assert np.array_equal(outputs[0], outputs[1]) and outputs[0].dtype == np.uint8 and outputs[0].shape == digit.shape

    # The reference: torchvision's own class on the same image, with torch seeded by the drawn seed.
    seed_pipeline(pipeline, 4)
    drawn = pipeline.transforms[0].get_params()["seed"]
    torch.manual_seed(drawn)
    expected = POLICIES[policy]()(torch.from_numpy(digit).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.array_equal(outputs[0], expected)
    # Other seeds make other images (on at least one of a few: a policy may pick the identity).
    others = []
    for sample_seed in range(5, 10):
        seed_pipeline(pipeline, sample_seed)
        others.append(pipeline(image=digit)["image"])
    assert any(not np.array_equal(outputs[0], other) for other in others)


def test_an_unknown_policy_names_the_choices() -> None:
    with pytest.raises(CvkitError, match="policy='randaug'.*autoaugment.*randaugment.*trivialaugment"):
        AugmentPolicy("randaug")


def task_for(tmp_path: Path, *overrides: str):
    cfg = compose_train(tmp_path, *STRONG, *overrides)
    return configured_task(cfg)


def test_mixed_batches_are_timms_and_an_odd_image_keeps_its_smoothed_target(tmp_path: Path) -> None:
    task = task_for(tmp_path)
    images = torch.rand(7, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    np.random.seed(3)
    mixed, targets = task.mixed(images.clone(), labels)

    np.random.seed(3)  # timm draws its choices from numpy's global generator
    reference = Mixup(mixup_alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    expected_images, expected_targets = reference(images[:6].clone(), labels[:6])
    assert torch.equal(mixed[:6], expected_images) and torch.allclose(targets[:6], expected_targets)
    assert torch.equal(mixed[6], images[6])  # left over, unmixed
    assert targets[6].argmax() == 6 and targets[6, 6] == pytest.approx(0.9 + 0.1 / 10)
    assert torch.allclose(targets.sum(dim=1), torch.ones(7))


def test_mixup_is_off_until_an_alpha_is_set(tmp_path: Path) -> None:
    assert task_for(tmp_path, "task.mixup.mixup_alpha=0", "task.mixup.cutmix_alpha=0").mixup is None


def test_strong_augmentation_learns_and_resumes_exactly(tmp_path: Path) -> None:
    """TrivialAugment, Mixup and CutMix: still learns the digits; stopped after one epoch and resumed, it ends
    with the weights of the run straight through (the per-sample seeds and numpy's generator are restored)."""
    run = [*STRONG, "trainer.max_epochs=2", "seed=5", "data.num_workers=2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_into(straight, *run)
    # 24 steps of mixed, heavily augmented 16 px digits: well above chance (0.1; 0.27 here), far below plain
    # training's 0.9. Images mixed with the wrong targets would stay at chance.
    assert read_metrics(straight)["val/acc"] > 0.2
    train_into(resumed, *run, *plug(StopAfterEpochs, "stop", epochs=1))
    train_into(resumed, *run, "resume=true")
    assert_same_weights(final_checkpoint(straight)["state_dict"], final_checkpoint(resumed)["state_dict"])
