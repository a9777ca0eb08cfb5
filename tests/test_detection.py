"""Detection end to end on the real BCCD set (Pascal VOC): cvkit-train and cvkit-eval as a user runs them."""

import contextlib
import io
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import evaluate_val, run_cli
from tests.test_cli import read_metrics, tensorboard_tags

SMALL = [
    "task=detection",
    "data=voc",
    "data.batch_size=2",
    "data.num_workers=0",
    "task.model.min_size=128",
    "task.model.max_size=160",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=3",
    "trainer.limit_test_batches=2",
    "optimizer.base_batch_size=16",
    "optimizer.lr=0.02",
]


@pytest.fixture(scope="module")
def detection_run(bccd_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("detection") / "run"
    result = run_cli("cvkit-train", *SMALL, f"data.root={bccd_voc}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
    return run_dir, result.stdout


def rescore(run_dir: Path) -> list[float]:
    """pycocotools on the run's ground_truth.json and predictions.json, as anyone would call it."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(run_dir / "ground_truth.json"))
        evaluation = COCOeval(truth, truth.loadRes(str(run_dir / "predictions.json")), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(value) for value in evaluation.stats]


def test_written_predictions_rescore_to_the_logged_metrics(detection_run: tuple[Path, str]) -> None:
    run_dir, _ = detection_run
    metrics = read_metrics(run_dir)
    keys = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100"]
    logged = [metrics[f"val/{key}"] for key in keys]
    assert rescore(run_dir)[: len(keys)] == pytest.approx(logged, rel=1e-6, abs=1e-7)  # logged as float32
    truth = json.loads((run_dir / "ground_truth.json").read_text())
    assert len(truth["images"]) == 6  # 3 val batches of 2: the evaluated images
    assert {c["name"] for c in truth["categories"]} == {"Platelets", "RBC", "WBC"}
    assert {"val/loss", "val/map_best", "test/map", "train/loss_classifier"} <= set(metrics)


def test_run_shows_boxes_and_per_class_ap(detection_run: tuple[Path, str]) -> None:
    run_dir, stdout = detection_run
    tags = tensorboard_tags(run_dir)
    assert {f"val/detections/{i}" for i in range(2)} <= set(tags["images"])
    assert "val AP per class" in stdout and "Platelets" in stdout
    report = json.loads((run_dir / "metrics.json").read_text())
    assert set(report["val_per_class_ap"]) == {"Platelets", "RBC", "WBC"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "detection" and summary["effective_lr"] == pytest.approx(0.02 * 2 / 16)


def test_eval_reproduces_the_val_metrics_and_writes_predictions(
    detection_run: tuple[Path, str], bccd_voc: Path, tmp_path: Path
) -> None:
    run_dir, _ = detection_run
    checkpoint = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    eval_dir = tmp_path / "eval"
    trained, evaluated = read_metrics(run_dir), evaluate_val(checkpoint, eval_dir, val_batches=3)
    for key in ("val/map", "val/map_50", "val/mar_100", "val/loss"):
        assert evaluated[key] == pytest.approx(trained[key], rel=1e-5), key
    assert json.loads((eval_dir / "predictions.json").read_text()) == json.loads(
        (run_dir / "predictions.json").read_text()
    )
    assert rescore(eval_dir) == rescore(run_dir)


def test_two_ranks_score_the_same_as_one_process(bccd_voc: Path, tmp_path: Path) -> None:
    # 2 gloo processes each validate 2 batches of 2 images (rank r: images r, r+2, ...); the gathered
    # evaluation covers the same 8 images as a single-process evaluation of 4 batches.
    run_dir, eval_dir = tmp_path / "ddp", tmp_path / "eval"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.limit_val_batches=2"]
    train = run_cli(
        "cvkit-train",
        *SMALL,
        *ddp,
        "trainer.limit_train_batches=2",
        f"data.root={bccd_voc}",
        "test_after_fit=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    )
    assert train.returncode == 0, train.stdout[-3000:]
    assert len(json.loads((run_dir / "ground_truth.json").read_text())["images"]) == 8
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    two_ranks, one = read_metrics(run_dir), evaluate_val(checkpoint, eval_dir, val_batches=4)
    for key in ("val/map", "val/map_50", "val/mar_100"):
        assert two_ranks[key] == pytest.approx(one[key], rel=1e-6), key
    assert rescore(run_dir) == rescore(eval_dir)
