"""Config -> the objects a run is made of, each built once and complete: the data module (checked against the
task), the Lightning trainer with its loggers and callbacks, the network, the per-device batch, the training
plan and the task. ``train()`` and ``evaluate()`` call these in that order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from torch import nn

from cvkit.batching import per_device_batch_size
from cvkit.callbacks.checkpointing import AtomicCheckpointIO
from cvkit.checkpoints import RunRecord
from cvkit.data.base import BaseDataModule
from cvkit.errors import CvkitError
from cvkit.models.networks import build_network as build_task_network
from cvkit.models.networks import task_network
from cvkit.optim import TrainingPlan, plan_training
from cvkit.tasks import BaseTask

DATA_CONFIGS = files("cvkit.configs").joinpath("data")
# Keys of the task config that are not the task's own arguments: its class, its network's options (read by
# the network builder) and the metric the callbacks config picks the best checkpoint by.
ASSEMBLY_KEYS = ("_target_", "model", "monitor", "monitor_mode")


def instantiate_at(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures name the config `key` (cvkit's own errors pass through)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, CvkitError):
            raise err.__cause__ from None
        raise CvkitError(f"{key}: {err.__cause__ or err}") from err


def instantiate_group(cfg: DictConfig, group: str) -> list[Any]:
    """Each entry of the ``group`` config (loggers, callbacks), instantiated; null entries are switched off. An
    entry with settings but no ``_target_`` is refused: its settings came from elsewhere (an experiment's
    ``callbacks.ema.decay``) while the chosen group file has no such entry."""
    objects = []
    for name, node in (cfg.get(group) or {}).items():
        if node is None:
            continue
        if "_target_" not in node:
            raise CvkitError(
                f"{group}.{name} has settings ({', '.join(node)}) but the chosen {group} config has no {name!r} "
                f"entry to apply them to; choose one that has it (e.g. {group}={name}) or drop the {group}.{name} "
                "settings"
            )
        objects.append(instantiate_at(f"{group}.{name}", node))
    return objects


def task_class(cfg: DictConfig) -> type[BaseTask]:
    """The task class ``cfg.task._target_`` names."""
    return get_class(cfg.task._target_)


def task_classes(base: type[BaseTask] = BaseTask) -> list[type[BaseTask]]:
    """Every task class there is (those of cvkit.tasks, and any other imported subclass of `base`)."""
    return [task for child in base.__subclasses__() for task in (child, *task_classes(child))]


def check_network_input(cfg: DictConfig) -> None:
    """Refuse an input size the configured network cannot take (a ViT's input must be a whole number of
    patches), for any task, before anything is built or read."""
    model = OmegaConf.to_container(cfg.task, resolve=True).get("model") or {}
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    image_size = OmegaConf.select(cfg, "data.image_size", default=None)
    image_size = OmegaConf.to_container(image_size) if OmegaConf.is_config(image_size) else image_size
    task_network(task_class(cfg).kind).check_input(backbone, model, image_size)


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


def build_trainer(
    cfg: DictConfig,
    callbacks: list[pl.Callback] | None = None,
    extra_callbacks: Sequence[pl.Callback] = (),
    **overrides: Any,
) -> pl.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` (with `overrides` of its arguments) with the configured loggers,
    `extra_callbacks` and then the configured callbacks (or `callbacks`: Lightning runs callbacks in this order,
    checkpoint writers last), writing every checkpoint through :class:`AtomicCheckpointIO`."""
    loggers = instantiate_group(cfg, "logger")
    if callbacks is None:
        callbacks = instantiate_group(cfg, "callbacks")
    check_launcher(int(cfg.trainer.get("num_nodes") or 1))
    return instantiate_at(
        "trainer",
        cfg.trainer,
        callbacks=[*extra_callbacks, *callbacks],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],  # whole checkpoint files, or none
        **overrides,
    )


def build_network(cfg: DictConfig, datamodule: BaseDataModule, load_weights: bool = True) -> nn.Module:
    """The network of ``cfg.backbone`` and ``cfg.task.model`` for the classes and input size of `datamodule`;
    without `load_weights` no pretrained or initial weights are read (for loading trained ones into)."""
    return build_task_network(
        task_class(cfg).kind,
        OmegaConf.to_container(cfg.backbone, resolve=True),
        OmegaConf.to_container(cfg.task, resolve=True).get("model") or {},
        datamodule.num_classes,
        getattr(datamodule, "image_size", None),
        load_weights,
    )


def settle_batch_size(
    datamodule: BaseDataModule,
    trainer: pl.Trainer,
    recorded: int | None,
    search: Callable[[], int] | None,
    recorded_where: str,
) -> int:
    """The per-device batch of the run: ``data.batch_size``; or ``data.global_batch_size`` over the trainer's
    devices x nodes x accumulation steps; or for ``data.batch_size=auto`` the batch `recorded` in the
    checkpoint the run continues or evaluates, else the one `search` finds (None: a CvkitError naming
    `recorded_where`, which records none)."""
    setting, global_batch = datamodule.batch_size, datamodule.global_batch_size
    if global_batch is not None:
        if setting == "auto":
            raise CvkitError(
                f"data.batch_size=auto and data.global_batch_size={global_batch} both set the batch: give one of them"
            )
        return per_device_batch_size(global_batch, trainer.world_size, trainer.accumulate_grad_batches)
    if setting != "auto":
        return setting
    if recorded:
        return recorded
    if search is None:
        raise CvkitError(f"data.batch_size=auto: {recorded_where} records no batch size; give data.batch_size=N")
    return search()


def build_training_plan(cfg: DictConfig, trainer: pl.Trainer, per_device_batch_size: int) -> TrainingPlan:
    """The run's optimizer, effective LR, schedule and backbone freezing (:func:`cvkit.optim.plan_training`) for
    `per_device_batch_size` images on each of the trainer's devices."""
    return plan_training(
        OmegaConf.to_container(cfg.optimizer, resolve=True),
        OmegaConf.to_container(cfg.scheduler, resolve=True),
        OmegaConf.to_container(cfg.backbone, resolve=True),
        per_device_batch_size=per_device_batch_size,
        world_size=trainer.world_size,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        max_epochs=trainer.max_epochs,
    )


def build_task(
    cfg: DictConfig,
    datamodule: BaseDataModule,
    network: nn.Module,
    plan: TrainingPlan | None,
    overrides: Sequence[str] = (),
) -> BaseTask:
    """The task of ``cfg.task`` around `network` for the classes of `datamodule`: its own options
    (``own_arguments``), the training `plan` (None: evaluation), and the run record of `cfg`, `plan` and the
    command-line `overrides` that its checkpoints will carry."""
    task = task_class(cfg)
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    record = RunRecord(
        task=task.kind,
        class_names=list(datamodule.class_names),
        config=OmegaConf.to_container(cfg, resolve=True),
        overrides=list(overrides),
        lr_plan=plan.lr.as_dict() if plan else {},
        image_size=getattr(datamodule, "image_size", None),
        mean=getattr(datamodule, "mean", None),
        std=getattr(datamodule, "std", None),
    )
    options = {key: value for key, value in task_cfg.items() if key not in ASSEMBLY_KEYS}
    return task(
        **task.own_arguments(options, datamodule),
        model=network,
        class_names=datamodule.class_names,
        plan=plan,
        record=record,
        channels_last=cfg.channels_last,
        nonfinite_loss=OmegaConf.to_container(cfg.nonfinite_loss) if cfg.nonfinite_loss is not None else None,
    )
