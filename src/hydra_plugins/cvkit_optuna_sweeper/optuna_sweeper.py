"""``-m hydra/sweeper=optuna``: hyper-parameter search with Optuna's ask/tell, one cvkit training job per trial.

Hydra's own Optuna plugin pins optuna below 3 (a 2021 release); this sweeper is a thin layer over current
Optuna instead. In a regular install Hydra finds it by scanning the ``hydra_plugins`` package; an editable
install hides it from that scan, and cvkit's entry points register it then (:func:`cvkit.cli`). Hydra's
scan executes this module on its own, without an entry in ``sys.modules`` and again on every scan, so it
must neither touch ``Plugins`` at import (that starts a scan inside the scan) nor postpone its annotations
(``from __future__ import annotations``: the dataclass below then looks its module up in ``sys.modules``).

The search space is written in Hydra's sweep syntax, on the command line or under
``hydra.sweeper.params``: ``interval(a, b)`` (a float, or an int when both ends are ints),
``tag(log, interval(a, b))`` (log-uniform), ``choice(x, y, ...)`` and ``range(a, b[, step])``; other
overrides are fixed for every trial. The objective is the task's monitored metric (``task.monitor``, e.g.
val/acc) at the end of the job, maximised or minimised as ``task.monitor_mode`` says. Rank 0 (the
sweeper's process) samples; a DDP job's processes all run the same command line, so they train with the
same values. After each validation a trial reports the metric and may be pruned
(:mod:`cvkit.callbacks.pruning`).
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.cvkit_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    n_trials: int = 10
    # maximize / minimize; null: as task.monitor_mode says (max -> maximize).
    direction: str | None = None
    study_name: str = "cvkit"
    # An Optuna storage URL (e.g. sqlite:///optuna.db) to keep the study and continue it; null: in memory.
    storage: str | None = None
    sampler: str = "tpe"  # tpe or random
    seed: int | None = None
    # median: stop a trial whose metric is below the median of the earlier trials at the same epoch; none.
    pruner: str = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 1
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="cvkit")


def distribution(override: Override) -> Any:
    """The Optuna distribution of a sweep override (None for a fixed value)."""
    import optuna.distributions as d

    if not override.is_sweep_override():
        return None
    sweep = override.value()
    if override.is_choice_sweep():
        return d.CategoricalDistribution(list(override.sweep_string_iterator()))
    if override.is_range_sweep():
        return d.IntDistribution(int(sweep.start), int(sweep.stop) - 1, step=int(sweep.step))
    if override.is_interval_sweep():
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return d.IntDistribution(sweep.start, sweep.end, log=log_scale)
        return d.FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a sweep Optuna can sample (interval, choice or range)")


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def study(self) -> Any:
        import optuna

        settings = self.settings
        direction = settings["direction"] or {"max": "maximize", "min": "minimize"}[self.config.task.monitor_mode]
        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        if settings["sampler"] not in samplers or settings["pruner"] not in ("median", "none"):
            raise ValueError("hydra.sweeper.sampler must be tpe or random, hydra.sweeper.pruner median or none")
        pruner = (
            optuna.pruners.MedianPruner(settings["pruner_startup_trials"], settings["pruner_warmup_epochs"])
            if settings["pruner"] == "median"
            else optuna.pruners.NopPruner()
        )
        return optuna.create_study(
            study_name=settings["study_name"],
            storage=settings["storage"],
            sampler=samplers[settings["sampler"]](seed=settings["seed"]),
            pruner=pruner,
            direction=direction,
            load_if_exists=True,
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna
        from optuna.trial import TrialState

        from cvkit.callbacks.pruning import use_trial

        given = [f"{key}={value}" for key, value in (self.settings["params"] or {}).items()] + list(arguments)
        fixed, space = [], {}
        for override in OverridesParser.create().parse_overrides(given):
            found = distribution(override)
            if found is None:
                fixed.append(override.input_line)
            else:
                space[override.get_key_element()] = found
        study = self.study()
        log.info("Optuna study %r: %d trials over %s", study.study_name, self.settings["n_trials"], list(space))
        returns = []
        for number in range(self.settings["n_trials"]):
            trial = study.ask(space)
            overrides = [*fixed, *(f"{key}={value}" for key, value in trial.params.items())]
            use_trial(trial)
            try:
                (result,) = self.launcher.launch([overrides], initial_job_idx=number)
            finally:
                use_trial(None)
            returns.append(result)
            try:
                value = result.return_value
            except optuna.TrialPruned as pruned:
                log.info("trial %d pruned: %s", trial.number, pruned)
                study.tell(trial, state=TrialState.PRUNED)
                continue
            except Exception as err:  # a failed job fails its trial, not the search
                log.warning("trial %d failed: %s", trial.number, err)
                study.tell(trial, state=TrialState.FAIL)
                continue
            if value is None or not math.isfinite(float(value)):
                log.warning("trial %d returned %r, not a number: failed", trial.number, value)
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, float(value))
        self.write_results(study)
        return returns

    def write_results(self, study: Any) -> None:
        """``optimization_results.yaml`` in the sweep dir: the best value and parameters, and every trial."""
        from optuna.trial import TrialState

        done = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
        results = {
            "name": "optuna",
            "direction": study.direction.name.lower(),
            "best_value": study.best_value if done else None,
            "best_params": study.best_params if done else None,
            "trials": [
                {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
                for t in study.trials
            ],
        }
        path = Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), path)
        log.info(
            "best %s: %s with %s (%s)", self.config.task.monitor, results["best_value"], results["best_params"], path
        )
