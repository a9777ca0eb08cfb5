"""Config -> objects: the data module, the task around its model, the Lightning trainer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from torch import nn

from cvkit.checkpoints import AtomicCheckpointIO
from cvkit.data.base import BaseDataModule
from cvkit.errors import CvkitError
from cvkit.models import build_classifier
from cvkit.models.coco_detectors import build_coco_detector
from cvkit.models.detectors import build_detector
from cvkit.models.segmenters import build_segmenter
from cvkit.optim import LRPlan
from cvkit.tasks import BaseTask
from cvkit.tasks.classification import class_weights_from

DATA_CONFIGS = files("cvkit.configs").joinpath("data")
# Keys of the task config read by the callbacks config (which checkpoint is best), not by the task.
TASK_KEYS_FOR_CALLBACKS = ("monitor", "monitor_mode")


def instantiate_at(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures name the config `key` (cvkit's own errors pass through)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, CvkitError):
            raise err.__cause__ from None
        raise CvkitError(f"{key}: {err.__cause__ or err}") from err


def build_datamodule(cfg: DictConfig) -> BaseDataModule:
    """Instantiate ``cfg.data`` (transform lists stay config; the module builds its pipelines), check that it
    serves the task of ``cfg.task``, and load it."""
    datamodule = instantiate_at("data", cfg.data, _recursive_=False)
    check_data_serves_task(datamodule, task_class(cfg).kind)
    datamodule.setup("fit")
    return datamodule


def check_data_serves_task(datamodule: BaseDataModule, kind: str) -> None:
    """Refuse, before any data is read, a data module whose batches are for another task than `kind`."""
    if datamodule.task_kind == kind:
        return
    raise CvkitError(
        f"task={kind} needs {kind} data, but data ({type(datamodule).__name__}) is {datamodule.task_kind} data; "
        f"choose one of data={'|'.join(data_configs_for(kind))}, or task={datamodule.task_kind}"
    )


def data_configs_for(kind: str) -> list[str]:
    """The names of cvkit's own ``data`` configs whose module serves task `kind`."""
    names = sorted(e.name.removesuffix(".yaml") for e in DATA_CONFIGS.iterdir() if e.name.endswith(".yaml"))
    return [name for name in names if not name.startswith("_") and data_config_kind(name) == kind]


def data_config_kind(name: str) -> str | None:
    """The task the module of cvkit's data config `name` serves: its ``_target_``'s, or that of the first of
    its defaults that has one (``camvid`` extends ``masks``)."""
    content = OmegaConf.create(DATA_CONFIGS.joinpath(f"{name}.yaml").read_text())
    if "_target_" in content:
        return getattr(get_class(content._target_), "task_kind", None)
    parents = [entry for entry in content.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    return next(filter(None, map(data_config_kind, parents)), None)


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


def lr_plan(cfg: DictConfig, datamodule: BaseDataModule, trainer: pl.Trainer) -> LRPlan:
    """How the effective LR follows from the config and the world the trainer runs in; first fits the
    data's per-device batch to that world (``data.global_batch_size``)."""
    datamodule.fit_to_world(trainer.world_size, trainer.accumulate_grad_batches)
    return LRPlan(
        base_lr=float(cfg.optimizer.lr),
        base_batch_size=int(cfg.optimizer.base_batch_size),
        per_device_batch_size=datamodule.batch_size,
        world_size=trainer.world_size,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        lr_scaling=str(cfg.optimizer.lr_scaling),
    )


def checkpoint_metadata(cfg: DictConfig, datamodule: BaseDataModule, plan: LRPlan, overrides: list[str]) -> dict:
    """What a checkpoint records so that it can be evaluated and used without the run's config files."""
    inputs = {key: getattr(datamodule, key) for key in ("image_size", "mean", "std") if hasattr(datamodule, key)}
    return {
        "task": task_class(cfg).kind,
        "class_names": datamodule.class_names,
        **inputs,
        "overrides": overrides,
        "lr_plan": plan.as_dict(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def task_class(cfg: DictConfig) -> type[BaseTask]:
    return get_class(cfg.task._target_)


def build_model(
    cfg: DictConfig, model_cfg: dict[str, Any], num_classes: int, image_size: Any, *, load_weights: bool = True
) -> nn.Module:
    """The network of the task of `cfg` on the ``cfg.backbone`` for `num_classes` at `image_size` (the
    data module's); `model_cfg` holds the task's model options (detection: the detector and its knobs).

    Without `load_weights` no pretrained or initial weights are read (no file, no network): the same
    architecture, for loading a trained state dict into (:func:`cvkit.inference.load`).
    """
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    model_cfg = dict(model_cfg)
    if not load_weights:
        if "freeze_bn" in model_cfg and model_cfg["freeze_bn"] is None:  # frozen when weights were loaded
            model_cfg["freeze_bn"] = bool(backbone.get("pretrained") or backbone.get("weights"))
        backbone.update(pretrained=False, weights=None)
    kind = task_class(cfg).kind
    if kind == "segmentation":
        return build_segmenter(**model_cfg, backbone=backbone, num_classes=num_classes)
    if kind == "detection":
        if model_cfg.get("coco_weights"):
            return build_coco_detector(model_cfg, backbone["name"], num_classes, load_weights=load_weights)
        model_cfg.pop("coco_weights", None)
        return build_detector(**model_cfg, backbone=backbone, num_classes=num_classes)
    return build_classifier(**backbone, num_classes=num_classes, image_size=image_size)


def build_task(cfg: DictConfig, datamodule: BaseDataModule, plan: LRPlan, metadata: Mapping[str, Any]) -> BaseTask:
    """The model for the data's classes, wrapped in the task of ``cfg.task``."""
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    task_cfg.pop("_target_")
    for callback_key in TASK_KEYS_FOR_CALLBACKS:
        task_cfg.pop(callback_key, None)
    model_cfg = task_cfg.pop("model", None) or {}
    model = build_model(cfg, model_cfg, datamodule.num_classes, getattr(datamodule, "image_size", None))
    if task_cfg.get("class_weights") is not None:  # read the train labels only when asked to
        counts = datamodule.class_counts("train")
        task_cfg["class_weights"] = class_weights_from(task_cfg["class_weights"], counts)
    if task_class(cfg).kind == "segmentation":
        task_cfg["ignore_index"] = datamodule.ignore_index
    return task_class(cfg)(
        **task_cfg,
        model=model,
        class_names=datamodule.class_names,
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        lr_plan=plan,
        metadata=metadata,
        channels_last=bool(cfg.get("channels_last", False)),
        nonfinite_loss=OmegaConf.to_container(cfg.nonfinite_loss) if cfg.get("nonfinite_loss") else None,
    )
