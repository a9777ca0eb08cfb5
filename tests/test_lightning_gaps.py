"""What Lightning's own checkpointing and signal handling do where cvkit does more (the reasons written in
src/cvkit/callbacks/checkpointing.py). Each test shows the gap in a plain Lightning run; when one fails,
Lightning has closed it, and cvkit's own mechanism may give way to Lightning's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader


class Worsening(pl.LightningModule):
    """A model whose validation loss gets worse every epoch, on 2 batches of random data."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_loss", float(self.current_epoch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(4, 2), batch_size=2)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(2, 2), batch_size=2)


def test_lightnings_last_checkpoint_stays_at_the_best_epoch(tmp_path: Path) -> None:
    # cvkit writes last.ckpt at every epoch end itself (RunCheckpoints).
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", mode="min", save_top_k=1, save_last=True)
    trainer = pl.Trainer(
        max_epochs=3, callbacks=[best], logger=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(Worsening())
    assert trainer.current_epoch == 3
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 0  # the best epoch, not the last


SIGTERM_MID_EPOCH = """
    import os, signal, sys
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            print("STEP", self.global_step, flush=True)
            if self.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return self.layer(batch).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = pl.Trainer(max_epochs=1, default_root_dir=sys.argv[1], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(Model(), DataLoader(torch.randn(20, 2), batch_size=2))  # SIGTERM: exits here (SystemExit)
    print("FINISHED")
"""


def test_lightning_stops_on_sigterm_with_status_0_and_saves_nothing(tmp_path: Path) -> None:
    # cvkit stops every rank at the end of the optimizer step, saves interrupted.ckpt and exits with 143.
    script = textwrap.dedent(SIGTERM_MID_EPOCH)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]  # as if the job had succeeded
    steps = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("STEP ")]
    assert steps[-1] < 9 and "FINISHED" not in result.stdout  # stopped early: 10 steps an epoch
    assert not list(tmp_path.rglob("*.ckpt"))  # and nothing saved
