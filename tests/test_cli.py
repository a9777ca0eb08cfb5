"""The console scripts as a user runs them: the README's commands, sweeps, eval, and bad input."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_cli

QUICK = ["data.image_size=16", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2"]


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def tensorboard_tags(run_dir: Path) -> dict:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events.Tags()


@pytest.mark.slow
def test_default_command_trains_digits_to_95_percent(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli("cvkit-train", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
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
    """The README's acceptance command on the real blood-cell crops."""
    run_dir = tmp_path_factory.mktemp("bccd") / "run"
    result = run_cli(
        "cvkit-train",
        "data=imagefolder",
        f"data.root={bccd_cells}",
        "backbone=resnet",
        "backbone.name=resnet18",
        "data.image_size=64",
        "trainer.max_epochs=5",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    return run_dir, result.stdout


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
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    result = run_cli("cvkit-eval", f"ckpt_path={best}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-3000:]
    evaluated = read_metrics(tmp_path)
    # test/* of the training run were measured on the best checkpoint too
    for key in ("test/acc", "test/f1", "test/loss"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6)
    assert evaluated["val/acc"] >= 0.97


def test_eval_refuses_data_with_other_classes(bccd_cells: Path, tmp_path: Path) -> None:
    train_dir = tmp_path / "digits"
    result = run_cli("cvkit-train", "trainer.max_epochs=1", *QUICK, f"hydra.run.dir={train_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
    checkpoint = train_dir / "checkpoints" / "last.ckpt"
    result = run_cli(
        "cvkit-eval",
        f"ckpt_path={checkpoint}",
        "data=imagefolder",
        f"data.root={bccd_cells}",
        "data.image_size=16",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 2
    assert "trained on classes ['0', '1'" in result.stdout and "Traceback" not in result.stdout


def test_sweep_runs_each_job_in_its_own_folder(tmp_path: Path) -> None:
    result = run_cli(
        "cvkit-train", "-m", "optimizer.lr=0.01,0.1", "trainer.max_epochs=1", *QUICK, f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    base_lrs = sorted(json.loads((tmp_path / job / "summary.json").read_text())["base_lr"] for job in ("0", "1"))
    assert base_lrs == [0.01, 0.1]
    assert all((tmp_path / job / "metrics.json").is_file() for job in ("0", "1"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backbone=resnet_xl"], "Could not find 'backbone/resnet_xl'"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not valid: it must be an integer"),
        (["data=imagefolder", "data.root=/no/such/folder"], "data.root: /no/such/folder does not exist"),
        (["data=imagefolder"], "data.root has no value: set it on the command line"),
        (["data=cifar10", "data.root=/no/such/folder"], "data.download=true"),
        (["ckpt_path=/no/such/last.ckpt"], "ckpt_path: /no/such/last.ckpt does not exist"),
        (["data=digits", "data.image_size=64", "backbone=vit", "data.image_size=40"], "patch size 16"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("cvkit-train", *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stdout
    assert "Traceback" not in result.stdout


def test_eval_of_a_missing_checkpoint(tmp_path: Path) -> None:
    result = run_cli("cvkit-eval", f"ckpt_path={tmp_path / 'none.ckpt'}")
    assert result.returncode == 2
    assert "none.ckpt does not exist" in result.stdout
