"""evaluate(cfg): a checkpoint's metrics on the val (and test) split, printed and written as metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cvkit.builders import build_datamodule, build_task, build_trainer, lr_plan, task_class
from cvkit.callbacks import ExitOnSignal, progress_bar
from cvkit.checkpoints import check_checkpoint_task, load_checkpoint
from cvkit.config import validate
from cvkit.console import image_count_rows, print_table, write_json
from cvkit.errors import CvkitError
from cvkit.summary import scalar_metrics
from cvkit.tasks import CHECKPOINT_KEY


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Run validation and test (where present) of ``cfg.ckpt_path`` on ``cfg.data``."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    checkpoint = load_checkpoint(cfg.ckpt_path, "ckpt_path")
    recorded = checkpoint.get(CHECKPOINT_KEY, {})
    check_checkpoint_task(recorded, task_class(cfg).kind, "ckpt_path", cfg.ckpt_path)
    datamodule = build_datamodule(cfg)
    trained_on = recorded.get("class_names")
    if trained_on is not None and list(trained_on) != datamodule.class_names:
        raise CvkitError(
            f"ckpt_path: the checkpoint was trained on classes {trained_on}, but {datamodule.describe()} "
            f"has {datamodule.class_names}"
        )
    trainer = build_trainer(cfg, callbacks=[progress_bar(), ExitOnSignal()])
    task = build_task(cfg, datamodule, lr_plan(cfg, datamodule, trainer), recorded)
    metrics: dict[str, float] = {}
    for split in cfg.get("splits", ["val", "test"]):
        if not datamodule.has_split(split):
            continue
        run = trainer.validate if split == "val" else trainer.test
        run(task, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    report = {"metrics": metrics, "checkpoint": str(cfg.ckpt_path), **task.report()}
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", report)
        for name, content in task.report_files().items():
            write_json(run_dir / name, content)
        task.print_report()
        print_table(f"cvkit eval: {cfg.ckpt_path}", {**metrics, **image_count_rows(report), "run dir": run_dir})
    return metrics, {"task": task, "datamodule": datamodule, "trainer": trainer, "report": report}
