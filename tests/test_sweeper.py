"""-m hydra/sweeper=optuna: trials sampled within the search space, each job's monitored metric told to the study,
the best written out, a DDP job training with the trial's values, and a bad trial pruned after its first epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvkit.callbacks.pruning import use_trial
from cvkit.train import train
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics, read_summary
from tests.helpers.presets import DDP_CPU, SHORT_DIGITS

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")
from omegaconf import OmegaConf  # noqa: E402

# One epoch of 3 steps on 16 px digits per trial.
TRIAL_RUN = [*SHORT_DIGITS, "trainer.max_epochs=1", "trainer.limit_train_batches=3", "logger=none"]


def sweep(sweep_dir: Path, *overrides: str) -> dict:
    result = run_cli("cvkit-train", "-m", "hydra/sweeper=optuna", *overrides, f"hydra.sweep.dir={sweep_dir}")
    assert_exit(result, 0)
    return OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))


def test_each_trial_trains_with_its_sampled_values_and_the_best_is_reported(tmp_path: Path) -> None:
    space = ["optimizer.lr=tag(log,interval(0.01,1.0))", "data.batch_size=choice(16,32)"]
    settings = ["hydra.sweeper.n_trials=3", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0"]
    results = sweep(tmp_path, *TRIAL_RUN, *space, *settings)
    trials = results["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3 and results["direction"] == "maximize"
    for trial in trials:
        job = tmp_path / str(trial["number"])
        summary = read_summary(job)
        assert summary["base_lr"] == pytest.approx(trial["params"]["optimizer.lr"])
        assert 0.01 <= summary["base_lr"] <= 1.0
        assert str(summary["per_device_batch_size"]) == trial["params"]["data.batch_size"]
        assert summary["max_epochs"] == 1  # the fixed overrides hold in every trial
        assert trial["value"] == pytest.approx(read_metrics(job)["val/acc"])  # the objective: task.monitor
    best = max(trials, key=lambda t: t["value"])
    assert results["best_value"] == best["value"] and results["best_params"] == best["params"]


def test_a_ddp_trial_trains_every_rank_with_the_trial_values(tmp_path: Path) -> None:
    results = sweep(tmp_path, *DDP_CPU, *TRIAL_RUN, "hydra.sweeper.n_trials=1", "optimizer.lr=interval(0.05,0.5)")
    (trial,) = results["trials"]
    summary = read_summary(tmp_path / "0")
    assert trial["state"] == "complete" and summary["devices"] == 2
    assert summary["base_lr"] == pytest.approx(trial["params"]["optimizer.lr"])
    assert summary["global_batch_size"] == 2 * summary["per_device_batch_size"]


def test_a_trial_worse_than_the_median_is_pruned_after_its_first_epoch(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1, 0))
    good = study.ask()
    good.report(0.99, step=0)
    study.tell(good, 0.99)
    trial = study.ask()
    use_trial(trial)
    try:
        with pytest.raises(optuna.TrialPruned, match="val/acc=.* after epoch 1"):
            train(compose_train(tmp_path, *TRIAL_RUN, "trainer.max_epochs=3", "optimizer.lr=1e-6"))
    finally:
        use_trial(None)
    assert list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0]  # one epoch, not three
    assert not json.loads((tmp_path / "summary.json").read_text())["resumed_from"]
