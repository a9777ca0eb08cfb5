"""Transfer learning in real runs (digits at 16 px, a ResNet-18 backbone from a cvkit checkpoint): a frozen
backbone and its BatchNorm statistics unchanged, stages frozen, the group LRs of every step against hand-computed
values, one unfreezing also across a resume in either phase, and the settings that cannot be refused."""

import csv
import shutil
from pathlib import Path

import pytest
import torch

from cvkit.builders import build_datamodule
from cvkit.config import validate
from cvkit.errors import CvkitError
from cvkit.train import train
from tests.helpers.callbacks import RecordWeights, SignalAtStep, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint
from tests.helpers.cli import assert_exit, evaluate_val, run_cli, train_into
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics, read_summary
from tests.helpers.presets import DDP_CPU, SHORT_DIGITS, TINY_CLASSIFICATION

UNFROZEN = "the backbone is unfrozen"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cvkit classification checkpoint of ResNet-18 (digits, two steps): the backbone the runs start from."""
    run_dir = tmp_path_factory.mktemp("pretrained")
    train(compose_train(run_dir, *TINY_CLASSIFICATION, "backbone.name=resnet18"))
    return run_dir / "checkpoints" / "last.ckpt"


def fine_tune(pretrained: Path) -> list[str]:
    """Digits, epochs of 3 steps of 16 images, the backbone from `pretrained`."""
    return [
        *SHORT_DIGITS, "data.batch_size=16", "trainer.limit_train_batches=3", "backbone.name=resnet18",
        f"backbone.weights={pretrained}",
    ]  # fmt: skip


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {key for key, value in before.items() if not torch.equal(value, after[key])}


def test_a_frozen_backbone_keeps_its_weights_and_batchnorm_statistics(pretrained: Path, tmp_path: Path) -> None:
    weights = Path(shutil.copy(pretrained, tmp_path / "backbone.ckpt"))
    run_dir = tmp_path / "run"
    train_into(run_dir, *fine_tune(weights), "trainer.max_epochs=2", "backbone.freeze=true")
    before = torch.load(pretrained, weights_only=True)["state_dict"]
    final = final_checkpoint(run_dir)
    # Only the head trained: every backbone tensor, BatchNorm's running statistics included, is as loaded.
    assert changed(before, final["state_dict"]) == {"model.fc.weight", "model.fc.bias"}
    optimizer = final["optimizer_states"][0]
    assert [len(group["params"]) for group in optimizer["param_groups"]] == [2]  # no state for frozen parameters
    summary = read_summary(run_dir)
    assert summary["backbone_training"] == "frozen for the whole run"
    assert summary["lr_groups"].startswith("head: 2 tensors")
    # The run evaluates where the file it started from is gone (its weights are the checkpoint's).
    weights.unlink()
    evaluated = evaluate_val(run_dir / "checkpoints" / "last.ckpt", tmp_path / "eval", 2)
    trained = read_metrics(run_dir)
    assert [evaluated[key] for key in ("val/acc", "val/loss")] == pytest.approx(
        [trained["val/acc"], trained["val/loss"]]
    )


def test_the_first_stages_stay_frozen(pretrained: Path, tmp_path: Path) -> None:
    train(compose_train(tmp_path, *fine_tune(pretrained), "trainer.max_epochs=1", "backbone.freeze_stages=2"))
    moved = changed(torch.load(pretrained, weights_only=True)["state_dict"], final_checkpoint(tmp_path)["state_dict"])
    frozen = ("model.conv1.", "model.bn1.", "model.layer1.")  # the stem and the first stage
    assert moved and not [key for key in moved if key.startswith(frozen)]
    assert {key.split(".")[1] for key in moved} == {"layer2", "layer3", "layer4", "fc"}


def lr_columns(run_dir: Path, *names: str) -> dict[str, list[float]]:
    """The LR of each optimizer step in the run's CSV log, by column."""
    (path,) = run_dir.glob("csv/**/metrics.csv")
    rows = [row for row in csv.DictReader(path.open()) if row.get("lr")]
    return {name: [float(row[name]) for row in rows] for name in names}


def test_each_groups_lr_is_the_hand_computed_one_under_warmup_cosine_and_unfreezing(pretrained, tmp_path) -> None:
    run = [
        *fine_tune(pretrained), "trainer.limit_train_batches=2", "trainer.max_epochs=3", "optimizer.lr=0.1",
        "optimizer.base_batch_size=16", "scheduler=cosine", "scheduler.warmup_epochs=1", "backbone.freeze_epochs=1",
        "backbone.unfreeze_lr_start=0.2", "optimizer.backbone_lr_factor=0.5", "optimizer.layer_decay=0.5",
    ]  # fmt: skip
    train(compose_train(tmp_path, *run))
    logged = lr_columns(tmp_path, "lr", "lr/backbone.layer8", "lr/backbone.layer0")
    # Two steps an epoch. The schedule: warmup from 0.1 over epoch 0 (0.1, 0.55), then a cosine over epochs 1-3
    # (1, 0.8536, 0.5, 0.1464). The head: 0.1 x that.
    assert logged["lr"] == pytest.approx([0.01, 0.055, 0.1, 0.0853553, 0.05, 0.0146447], rel=1e-5)
    # Layer 8 of 10: 0.5 (backbone) x 0.5 (one layer from the head) = 0.25 of the head's; frozen in epoch 0 (0),
    # then x 0.2 at the start of epoch 1, x 0.6 half-way, x 1 from epoch 2 on.
    assert logged["lr/backbone.layer8"] == pytest.approx(
        [0.0, 0.0, 0.1 * 0.25 * 0.2, 0.0853553 * 0.25 * 0.6, 0.05 * 0.25, 0.0146447 * 0.25], rel=1e-5
    )
    # The stem, layer 0: 0.5 x 0.5**9 = 1/1024 of the head's.
    assert logged["lr/backbone.layer0"][2] == pytest.approx(0.1 / 1024 * 0.2, rel=1e-5)


def test_the_backbone_unfreezes_once_also_across_a_resume_in_either_phase(pretrained: Path, tmp_path: Path) -> None:
    run = [*fine_tune(pretrained), "data.num_workers=2", "trainer.max_epochs=3", "backbone.freeze_epochs=1"]

    def cli(run_dir: Path, *overrides: str) -> str:
        result = run_cli("cvkit-train", *run, *overrides, f"hydra.run.dir={run_dir}")
        assert result.returncode in (0, 143), result.stdout[-3000:]
        return result.stdout

    straight = cli(tmp_path / "straight")
    assert straight.count(UNFROZEN) == 1 and "epoch 1: the backbone is unfrozen" in straight
    reference = final_checkpoint(tmp_path / "straight")["state_dict"]
    for phase, step in (("frozen", 1), ("unfrozen", 4)):  # mid-epoch 0 (frozen), mid-epoch 1 (unfrozen)
        run_dir = tmp_path / phase
        stopped = cli(run_dir, *plug(SignalAtStep, "fault", signal_name="SIGTERM", step=step))
        if phase == "frozen":  # frozen parameters took no optimizer state: only the head's momentum
            interrupted = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)
            assert len(interrupted["optimizer_states"][0]["state"]) == 2
        resumed = cli(run_dir, "resume=true")
        assert (stopped + resumed).count(UNFROZEN) == 1, phase
        assert_same_weights(reference, final_checkpoint(run_dir)["state_dict"])


def test_under_ddp_the_frozen_backbone_stays_put_and_the_ranks_agree_after_unfreezing(
    pretrained: Path, tmp_path: Path
) -> None:
    # SGD with weight decay: a frozen parameter given a zero gradient (not none) by DDP would shrink.
    run = [
        *DDP_CPU, "trainer.strategy=ddp_find_unused_parameters_true", *fine_tune(pretrained), "trainer.max_epochs=2",
        "trainer.limit_train_batches=2", "backbone.freeze_epochs=1", *plug(RecordWeights),
    ]  # fmt: skip
    assert_exit(run_cli("cvkit-train", *run, f"hydra.run.dir={tmp_path}"), 0)
    weights = {
        (epoch, rank): torch.load(tmp_path / f"weights_epoch{epoch}_rank{rank}.pt", weights_only=True)
        for epoch in (0, 1)
        for rank in (0, 1)
    }
    loaded = {
        key.removeprefix("model."): value
        for key, value in torch.load(pretrained, weights_only=True)["state_dict"].items()
    }
    assert changed(loaded, weights[0, 0]) == changed(loaded, weights[0, 1]) == {"fc.weight", "fc.bias"}
    assert len(changed(loaded, weights[1, 0])) > 100  # unfrozen in epoch 1: the backbone trained
    assert_same_weights(weights[1, 0], weights[1, 1])  # and its gradients were averaged over the ranks


def test_settings_that_cannot_work_are_refused(pretrained: Path, tmp_path: Path) -> None:
    weights = f"backbone.weights={pretrained}"
    with pytest.raises(CvkitError, match="use trainer.strategy=ddp_find_unused_parameters_true"):
        validate(compose_train(tmp_path, *DDP_CPU, "backbone.freeze_epochs=1", weights))
    with pytest.raises(CvkitError, match="trainer.strategy=auto on several devices"):
        validate(compose_train(tmp_path, "trainer.devices=2", "backbone.freeze_epochs=1", weights))
    unused = "trainer.strategy=ddp_find_unused_parameters_true"
    validate(compose_train(tmp_path, *DDP_CPU, "backbone.freeze_epochs=1", weights, unused))
    with pytest.raises(CvkitError, match="backbone.freeze: the backbone starts from random weights"):
        validate(compose_train(tmp_path, "backbone.freeze=true"))
    result = run_cli(
        "cvkit-train", *TINY_CLASSIFICATION, "backbone.name=resnet18", "backbone.freeze_stages=9", weights,
        f"hydra.run.dir={tmp_path / 'stages'}",
    )  # fmt: skip
    assert_exit(result, 2, "backbone.freeze_stages=9: resnet18 has 5 stages (timm's coarse groups)", clean=True)


def test_a_few_images_per_class_are_drawn_by_the_seed(tmp_path: Path) -> None:
    def drawn(seed: int) -> list[int]:
        datamodule = build_datamodule(compose_train(tmp_path, "data.train_per_class=3", f"seed={seed}"))
        assert datamodule.split_sizes()["train"] == 30
        assert datamodule.class_counts().tolist() == [3] * 10
        return datamodule.splits["train"].images.indices

    assert drawn(0) == drawn(0) != drawn(1)


def recipe(experiment: str, weights: Path, *data: str, epochs: int = 1) -> list[str]:
    """`experiment` from `weights`, at the smallest scale: one batch of each split, `epochs` epochs."""
    return [
        f"experiment={experiment}", f"backbone.weights={weights}", "backbone.name=resnet18", *data,
        "data.num_workers=0", f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "test_after_fit=false", "logger=none",
    ]  # fmt: skip


def test_the_classification_recipe_fine_tunes_from_a_backbone_file(pretrained: Path, tmp_path: Path) -> None:
    run = recipe("finetune_classification", pretrained, "data.image_size=16", "data.batch_size=16", epochs=3)
    train(compose_train(tmp_path, *run))
    summary = read_summary(tmp_path)
    assert summary["backbone_training"].startswith("frozen in epochs 0-1, then from 0.1x")
    assert "backbone.layer8 (layer4.1): 6 tensors" in summary["lr_groups"]  # layer-wise decay


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_the_detection_and_segmentation_recipes_start_from_a_classifiers_backbone(
    task: str, pretrained: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = {
        "detection": ["data=voc", f"data.root={request.getfixturevalue('bccd_voc')}", "task.model.min_size=128",
                      "task.model.max_size=160", "data.batch_size=2"],
        "segmentation": ["data=camvid", f"data.root={request.getfixturevalue('camvid')}", "data.image_size=[64,96]",
                         "data.batch_size=2"],
    }[task]  # fmt: skip
    train(compose_train(tmp_path, *recipe(f"finetune_{task}", pretrained, *data, epochs=2)))
    weights = final_checkpoint(tmp_path)["state_dict"]
    stem = {"detection": "model.backbone.body.conv1.weight", "segmentation": "model.encoder.conv1.weight"}[task]
    loaded = torch.load(pretrained, weights_only=True)["state_dict"]["model.conv1.weight"]
    # Detection: the stem frozen throughout (freeze_stages=2), so still the classifier's; segmentation: trained
    # after its frozen first epoch, so moved from it.
    assert torch.equal(weights[stem], loaded) == (task == "detection")
    assert read_summary(tmp_path)["backbone_training"]


def test_a_recipe_without_its_backbone_file_says_so(tmp_path: Path) -> None:
    result = run_cli("cvkit-train", "experiment=finetune_classification", f"hydra.run.dir={tmp_path}")
    assert_exit(result, 2, "backbone.freeze_epochs: the backbone starts from random weights", clean=True)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything trained
