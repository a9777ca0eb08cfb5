"""callbacks=ema: Lightning's EMA of the weights, as cvkit validates, checkpoints and resumes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging

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


class Recorder(pl.LightningModule):
    """A linear layer trained on noise, recording the weight each validation sees."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        if batch_idx == 0:
            self.seen.append(self.layer.weight.detach().clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_before_its_first_update_lightnings_ema_validates_the_initial_weights() -> None:
    """What docs/training.md warns of: with update_starting_at_step, validations before that step score the
    weights the run started from (the average is a copy of them until its first update), and a run that ends
    before it ends with them. Hence no update_starting_at_step in cvkit's recipes."""
    torch.manual_seed(0)
    model = Recorder()
    initial = model.layer.weight.detach().clone()
    loader = torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=2)
    ema = EMAWeightAveraging(decay=0.5, update_starting_at_step=100)
    trainer = pl.Trainer(max_epochs=2, callbacks=[ema], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, loader, loader)
    assert all(torch.equal(seen, initial) for seen in model.seen)  # 2 validations, after 4 and 8 steps
    assert torch.equal(model.layer.weight, initial)  # and the trained weights are gone
