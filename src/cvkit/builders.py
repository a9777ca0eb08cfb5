"""Config -> the objects a run is made of, besides the task (which builds itself: ``from_config``): the
data module checked against the task, the Lightning trainer with its loggers and callbacks, and the
per-device batch fitted to the world the trainer runs in."""

from __future__ import annotations

import os
from importlib.resources import files
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from cvkit.batching import per_device_batch_size
from cvkit.callbacks.checkpointing import AtomicCheckpointIO
from cvkit.data.base import BaseDataModule
from cvkit.errors import CvkitError
from cvkit.optim import TrainingPlan, plan_training
from cvkit.tasks import BaseTask

DATA_CONFIGS = files("cvkit.configs").joinpath("data")


def instantiate_at(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures name the config `key` (cvkit's own errors pass through)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, CvkitError):
            raise err.__cause__ from None
        raise CvkitError(f"{key}: {err.__cause__ or err}") from err


def task_class(cfg: DictConfig) -> type[BaseTask]:
    """The task class ``cfg.task._target_`` names."""
    return get_class(cfg.task._target_)


def task_classes(base: type[BaseTask] = BaseTask) -> list[type[BaseTask]]:
    """Every task class there is (those of cvkit.tasks, and any other imported subclass of `base`)."""
    return [task for child in base.__subclasses__() for task in (child, *task_classes(child))]


def build_datamodule(cfg: DictConfig) -> BaseDataModule:
    """Instantiate ``cfg.data`` (transform lists stay config; the module builds its pipelines), check that it
    serves the task of ``cfg.task`` before any data is read, and load it."""
    datamodule = instantiate_at("data", cfg.data, _recursive_=False)
    task = task_class(cfg)
    if not isinstance(datamodule, task.data_module):
        given = next((c for c in type(datamodule).__mro__ if BaseDataModule in c.__bases__), type(datamodule))
        served = [other.kind for other in task_classes() if isinstance(datamodule, other.data_module)]
        raise CvkitError(
            f"task={task.kind} needs {task.kind} data (a {task.data_module.__name__}), but data "
            f"({type(datamodule).__name__}) is a {given.__name__}; choose one of "
            f"data={'|'.join(data_configs_for(task.data_module))}" + "".join(f", or task={kind}" for kind in served)
        )
    datamodule.setup("fit")
    return datamodule


def data_configs_for(data_module: type[BaseDataModule]) -> list[str]:
    """The names of cvkit's own ``data`` configs whose module is a `data_module`."""
    names = sorted(e.name.removesuffix(".yaml") for e in DATA_CONFIGS.iterdir() if e.name.endswith(".yaml"))
    return [name for name in names if not name.startswith("_") and issubclass(data_config_class(name), data_module)]


def data_config_class(name: str) -> type:
    """The module class of cvkit's data config `name`: its ``_target_``'s, or that of the first of its
    defaults that has one (``camvid`` extends ``masks``)."""
    content = OmegaConf.create(DATA_CONFIGS.joinpath(f"{name}.yaml").read_text())
    if "_target_" in content:
        return get_class(content._target_)
    parents = [entry for entry in content.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    return next((found for found in map(data_config_class, parents) if found is not object), object)


def check_launcher(num_nodes: int) -> None:
    """Refuse a multi-node run that no launcher started: its processes would wait for peers forever."""
    launched = (
        SLURMEnvironment.detect()
        or TorchElasticEnvironment.detect()
        or all(key in os.environ for key in ("MASTER_ADDR", "NODE_RANK"))
    )
    if num_nodes > 1 and not launched:
        raise CvkitError(
            f"trainer.num_nodes={num_nodes} but no launcher started this process: run it on every node with "
            "torchrun (--nnodes, --node-rank, --rdzv-endpoint), with srun inside a SLURM allocation, or set "
            "MASTER_ADDR, MASTER_PORT and NODE_RANK yourself (see docs/distributed.md)"
        )


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback] | None = None, **overrides: Any) -> pl.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` with the configured loggers, and the configured callbacks
    unless `callbacks` are given."""
    loggers = [instantiate_at(f"logger.{k}", c) for k, c in (cfg.get("logger") or {}).items() if c is not None]
    if callbacks is None:
        configured = (cfg.get("callbacks") or {}).items()
        callbacks = [instantiate_at(f"callbacks.{k}", c) for k, c in configured if c is not None]
    check_launcher(int(cfg.trainer.get("num_nodes") or 1))
    overrides.setdefault("plugins", [AtomicCheckpointIO()])  # whole checkpoint files, or none
    return instantiate_at("trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def fit_batch_to_world(datamodule: BaseDataModule, trainer: pl.Trainer) -> None:
    """Derive the data's per-device batch from ``data.global_batch_size`` (when set) for the world the trainer
    runs in: its devices x nodes and its gradient accumulation."""
    if datamodule.global_batch_size is not None:
        if datamodule.batch_size == "auto":
            raise CvkitError(
                f"data.batch_size=auto and data.global_batch_size={datamodule.global_batch_size} both set the "
                "batch: give one of them"
            )
        world, accumulation = trainer.world_size, trainer.accumulate_grad_batches
        datamodule.batch_size = per_device_batch_size(datamodule.global_batch_size, world, accumulation)


def search_batch_size(cfg: DictConfig, task: BaseTask, datamodule: BaseDataModule, trainer: pl.Trainer) -> int:
    """The per-device batch of ``data.batch_size=auto`` on this rank's device (:mod:`cvkit.batch_search`)."""
    from cvkit.batch_search import find_batch_size

    settings = OmegaConf.to_container(cfg.batch_search, resolve=True)
    device = trainer.strategy.root_device
    optimizer = str(cfg.optimizer._target_).rsplit(".", 1)[-1]
    return find_batch_size(task, datamodule, device, settings, optimizer, trainer.precision_plugin.forward_context)


def settle_batch(
    cfg: DictConfig, datamodule: BaseDataModule, task: BaseTask, trainer: pl.Trainer, batch_size: int
) -> TrainingPlan:
    """Train on `batch_size` images per device: the data's batch, and the task's plan (LR, schedule) for it."""
    datamodule.batch_size = batch_size
    plan = build_training_plan(cfg, datamodule, trainer)
    task.use_plan(plan)
    return plan


def build_training_plan(cfg: DictConfig, datamodule: BaseDataModule, trainer: pl.Trainer) -> TrainingPlan:
    """The run's optimizer, effective LR, schedule and steps per epoch (:func:`cvkit.optim.plan_training`) for its
    data, at the per-device batch :func:`fit_batch_to_world` set, and its trainer's world."""
    return plan_training(
        OmegaConf.to_container(cfg.optimizer, resolve=True),
        OmegaConf.to_container(cfg.scheduler, resolve=True),
        train_samples=datamodule.split_sizes()["train"],
        per_device_batch_size=datamodule.batch_size,
        world_size=trainer.world_size,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        max_epochs=trainer.max_epochs,
        limit_train_batches=trainer.limit_train_batches,
    )
