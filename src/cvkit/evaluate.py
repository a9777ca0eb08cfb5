"""evaluate(cfg): a checkpoint's metrics on the val (and test) split, printed and written as metrics.json.

The network is rebuilt without its initial weights (no pretrained file, no hub: the checkpoint's replace them
all) and given the checkpoint's, read once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cvkit.builders import (
    build_datamodule,
    build_network,
    build_task,
    build_trainer,
    check_network_input,
    settle_batch_size,
    task_class,
)
from cvkit.callbacks import ExitOnSignal, progress_bar
from cvkit.checkpoints import SavedRun
from cvkit.config import validate
from cvkit.errors import CvkitError
from cvkit.summary import scalar_metrics, write_report


def evaluate(cfg: DictConfig, saved: SavedRun | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Run validation and test (where present) of the checkpoint ``cfg.ckpt_path`` (`saved`: that file, already
    read) on ``cfg.data``."""
    validate(cfg)
    check_network_input(cfg)
    saved = saved or SavedRun.read(cfg.ckpt_path, "ckpt_path")
    run_dir = Path(cfg.paths.output_dir)
    record = saved.record
    if record is not None:
        record.check_task(task_class(cfg).kind, "ckpt_path", cfg.ckpt_path)
    datamodule = build_datamodule(cfg)
    if record is not None:
        record.check_classes(datamodule.class_names, datamodule.describe())
    trainer = build_trainer(cfg, callbacks=[progress_bar(), ExitOnSignal()])
    datamodule.batch_size = settle_batch_size(datamodule, trainer, saved.per_device_batch_size, None, str(saved.path))
    task = build_task(cfg, datamodule, build_network(cfg, datamodule, load_weights=False), plan=None)
    try:
        task.load_state_dict(saved.content["state_dict"])
    except RuntimeError as err:  # missing, unexpected or differently shaped tensors
        raise CvkitError(
            f"ckpt_path: {saved.path} does not hold the weights of the network this config builds "
            f"({str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err})"
        ) from err
    del saved
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        if not datamodule.has_split(split):
            continue
        run = trainer.validate if split == "val" else trainer.test
        run(task, datamodule=datamodule, verbose=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    report = {"metrics": metrics, "checkpoint": str(cfg.ckpt_path), **task.report()}
    if trainer.is_global_zero:
        write_report(run_dir, report, task, f"cvkit eval: {cfg.ckpt_path}", metrics)
    return metrics, {"task": task, "datamodule": datamodule, "trainer": trainer, "report": report}
