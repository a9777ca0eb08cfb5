"""The console scripts as a user runs them: the documented commands, sweeps, eval, and bad input."""

import shutil
from pathlib import Path

import pytest

from cvkit.train import train
from tests.helpers.cli import assert_exit, run_cli, train_into
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics, read_report, read_summary, tensorboard_tags
from tests.helpers.presets import TINY_CLASSIFICATION, tiny_detection


@pytest.mark.slow
def test_default_command_trains_digits_to_95_percent(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli("cvkit-train", f"hydra.run.dir={run_dir}")
    assert_exit(result, 0)
    assert read_metrics(run_dir)["val/acc"] >= 0.95
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-epoch*.ckpt"))
    tags = tensorboard_tags(run_dir)
    assert "val/confusion_matrix" in tags["images"]
    assert any("lr" in tag for tag in tags["scalars"]) and "val/acc" in tags["scalars"]
    for shown in ("lr = 0.1 x 64 / 256 = 0.025 (linear scaling)", "resnet18", "best checkpoint", str(run_dir)):
        assert shown in result.stdout


@pytest.fixture(scope="module")
def bccd_run(bccd_cells: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The acceptance command of docs/data.md on the real blood-cell crops."""
    run_dir = tmp_path_factory.mktemp("bccd") / "run"
    readme_command = [
        "data=imagefolder",
        f"data.root={bccd_cells}",
        "backbone=resnet",
        "backbone.name=resnet18",
        "data.image_size=64",
        "trainer.max_epochs=5",
    ]
    return run_dir, train_into(run_dir, *readme_command)


@pytest.mark.slow
def test_bccd_cells_acceptance(bccd_run: tuple[Path, str]) -> None:
    metrics = read_metrics(bccd_run[0])
    assert metrics["val/acc"] >= 0.97
    assert metrics["val/f1"] >= 0.90
    assert "test/acc" in metrics and metrics["test/acc"] >= 0.9


@pytest.mark.slow
def test_eval_reproduces_the_checkpoints_metrics(bccd_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = bccd_run
    trained = read_metrics(run_dir)
    best = read_report(run_dir)["best_checkpoint"]
    assert_exit(run_cli("cvkit-eval", f"ckpt_path={best}", f"hydra.run.dir={tmp_path}"), 0)
    evaluated = read_metrics(tmp_path)
    # test/* of the training run were measured on the best checkpoint too
    for key in ("test/acc", "test/f1", "test/loss"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6)
    assert evaluated["val/acc"] >= 0.97


def test_eval_refuses_data_with_other_classes(bccd_cells: Path, tmp_path: Path) -> None:
    train_dir = tmp_path / "digits"
    train_into(train_dir, *TINY_CLASSIFICATION)
    checkpoint = train_dir / "checkpoints" / "last.ckpt"
    result = run_cli(
        "cvkit-eval",
        f"ckpt_path={checkpoint}",
        "data=imagefolder",
        f"data.root={bccd_cells}",
        "data.image_size=16",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert_exit(result, 2, "trained on classes ['0', '1'", clean=True)


def test_sweep_runs_each_job_in_its_own_folder(tmp_path: Path) -> None:
    result = run_cli("cvkit-train", "-m", "optimizer.lr=0.01,0.1", *TINY_CLASSIFICATION, f"hydra.sweep.dir={tmp_path}")
    assert_exit(result, 0)
    base_lrs = sorted(read_summary(tmp_path / job)["base_lr"] for job in ("0", "1"))
    assert base_lrs == [0.01, 0.1]
    assert all((tmp_path / job / "metrics.json").is_file() for job in ("0", "1"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backbone=resnet_xl"], "Could not find 'backbone/resnet_xl'"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not valid: it must be an integer"),
        (["data.num_workers=many"], "data.num_workers='many' is not valid: it must be an integer or auto"),
        (["data=imagefolder", "data.root=/no/such/folder"], "data.root: /no/such/folder does not exist"),
        (["data=imagefolder"], "data.root has no value: set it on the command line"),
        (["data=cifar10", "data.root=/no/such/folder"], "data.download=true"),
        (["ckpt_path=/no/such/last.ckpt"], "ckpt_path: /no/such/last.ckpt does not exist"),
        (["data=digits", "data.image_size=64", "backbone=vit", "data.image_size=40"], "patch size 16"),
        (["+trainer.enable_checkpointing=false"], "callbacks.model_checkpoint and callbacks.checkpoints write"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("cvkit-train", *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stdout
    assert "Traceback" not in result.stdout


def test_eval_of_a_missing_checkpoint(tmp_path: Path) -> None:
    result = run_cli("cvkit-eval", f"ckpt_path={tmp_path / 'none.ckpt'}")
    assert_exit(result, 2, "none.ckpt does not exist")


def one_class_folder(bccd_cells: Path, root: Path) -> Path:
    for split in ("train", "val"):
        (root / split / "RBC").mkdir(parents=True)
        for image in sorted((bccd_cells / split / "RBC").iterdir())[:2]:
            shutil.copy(image, root / split / "RBC")
    return root


def broken_config_dir(root: Path) -> Path:
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "broken.yaml").write_text("trainer:\n  max_epochs: [1\n  devices: : 2\n")
    return root


BAD_INPUT = {
    "detection task, classification data": (
        lambda paths, tmp: ["task=detection"],
        "task=detection needs detection data (a DetectionDataModule), but data (DigitsDataModule) is a "
        "ClassificationDataModule; choose one of data=coco|coco_instances|voc|yolo|yolo_seg, or task=classification",
    ),
    "classification task, detection data": (
        lambda paths, tmp: ["task=classification", "data=voc", f"data.root={paths['voc']}"],
        "task=classification needs classification data (a ClassificationDataModule), but data "
        "(VOCDetectionDataModule) is a DetectionDataModule",
    ),
    "segmentation task, classification data": (
        lambda paths, tmp: ["task=segmentation"],
        "task=segmentation needs segmentation data (a SegmentationDataModule), but data (DigitsDataModule) "
        "is a ClassificationDataModule",
    ),
    "one class": (
        lambda paths, tmp: ["data=imagefolder", f"data.root={one_class_folder(paths['cells'], tmp / 'one')}"],
        "has 1 class ['RBC']: classification needs at least 2 classes",
    ),
    "not a weights file": (
        lambda paths, tmp: [f"backbone.weights={paths['readme']}"],
        "backbone.weights: ",
    ),
    "YAML syntax": (
        lambda paths, tmp: ["--config-dir", str(broken_config_dir(tmp / "configs")), "experiment=broken"],
        "broken.yaml is not valid YAML at line 3, column 10",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line(
    case: str, bccd_voc: Path, bccd_cells: Path, data_root: Path, tmp_path: Path
) -> None:
    arguments, message = BAD_INPUT[case]
    readme = tmp_path / "weights.pth"
    shutil.copy(data_root / "README.txt", readme)
    paths = {"voc": bccd_voc, "cells": bccd_cells, "readme": readme}
    result = run_cli("cvkit-train", *arguments(paths, tmp_path), f"hydra.run.dir={tmp_path / 'run'}")
    assert_exit(result, 2, message, clean=True)
    if case == "not a weights file":
        assert f"{readme} is not a weights file" in result.stdout


@pytest.fixture(scope="module")
def classification_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("digits")
    train(compose_train(run_dir, *TINY_CLASSIFICATION))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("script", ["cvkit-eval", "cvkit-train"])
def test_a_checkpoint_of_another_task_is_refused(
    script: str, classification_checkpoint: Path, bccd_voc: Path, tmp_path: Path
) -> None:
    # The tiny detection run: were the refusal lost, the run would end soon, not train a full detector.
    detection = tiny_detection(bccd_voc)
    result = run_cli(script, f"ckpt_path={classification_checkpoint}", *detection, f"hydra.run.dir={tmp_path}")
    expected = f"ckpt_path: {classification_checkpoint} is a classification checkpoint, but task=detection"
    assert_exit(result, 2, expected, clean=True)
