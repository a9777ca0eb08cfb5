"""cvkit-eval as a user meets it: one line for a missing checkpoint, and a checkpoint evaluated from itself
alone (the run's initial weights file may be gone: its trained weights replace every tensor)."""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch

from tests.helpers.cli import assert_exit, run_cli, train_into
from tests.helpers.presets import TINY_CLASSIFICATION


def test_eval_without_a_checkpoint_says_so_in_one_line(tmp_path: Path) -> None:
    result = run_cli("cvkit-eval", f"hydra.run.dir={tmp_path}")
    assert_exit(result, 2, "cvkit: ckpt_path is not set: give the checkpoint to evaluate, e.g. cvkit-eval", clean=True)
    assert len(result.stdout.strip().splitlines()) == 1


def test_a_run_trained_from_a_weights_file_is_evaluated_after_the_file_moved(tmp_path: Path) -> None:
    weights = tmp_path / "resnet18_start.pth"
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), weights)
    run_dir = tmp_path / "run"
    train_into(run_dir, *TINY_CLASSIFICATION, f"backbone.weights={weights}")
    trained = json.loads((run_dir / "metrics.json").read_text())["metrics"]["val/acc"]
    weights.rename(tmp_path / "elsewhere.pth")  # the file the run started from is gone
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    result = run_cli("cvkit-eval", f"ckpt_path={checkpoint}", "trainer.limit_val_batches=1", "splits=[val]",
                     f"hydra.run.dir={tmp_path / 'eval'}")  # fmt: skip
    assert_exit(result, 0)
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["val/acc"]
    assert evaluated == trained  # the same weights, on the same val batch
