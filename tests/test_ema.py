"""callbacks=ema: Lightning's EMA of the weights, as cvkit validates, checkpoints and resumes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.callbacks import StopAfterEpochs, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint
from tests.helpers.cli import evaluate_val, train_into
from tests.helpers.logs import read_metrics
from tests.helpers.presets import LEARNING_DIGITS

# decay 0.8: the average trails the weights by a few steps of 12, so the two clearly differ.
RUN = [*LEARNING_DIGITS, "callbacks=ema", "callbacks.ema.decay=0.8", "trainer.max_epochs=2", "seed=3"]


def test_ema_is_validated_checkpointed_and_resumed_exactly(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    train_into(straight, *RUN)
    final = final_checkpoint(straight)
    averaged, raw = final["state_dict"], final["current_model_state"]
    moved = [k for k in averaged if averaged[k].is_floating_point() and not torch.equal(averaged[k], raw[k])]
    assert len(moved) > len(averaged) // 2  # the average is not the weights

    # The logged val accuracy is the averaged weights' (what cvkit-eval of the checkpoint scores).
    evaluated = evaluate_val(straight / "checkpoints" / "last.ckpt", tmp_path / "eval", val_batches=100)
    assert evaluated["val/acc"] == pytest.approx(read_metrics(straight)["val/acc"], abs=1e-6)

    # Stopped after one epoch and resumed: the same average and the same weights as straight through.
    resumed = tmp_path / "resumed"
    train_into(resumed, *RUN, *plug(StopAfterEpochs, "stop", epochs=1))
    assert final_checkpoint(resumed)["epoch"] == 0
    train_into(resumed, *RUN, "resume=true")
    assert_same_weights(averaged, final_checkpoint(resumed)["state_dict"])
    assert_same_weights(raw, final_checkpoint(resumed)["current_model_state"])
