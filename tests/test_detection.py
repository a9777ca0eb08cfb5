"""Detection end to end on the real BCCD set (Pascal VOC): cvkit-train and cvkit-eval as a user runs them."""

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

import cvkit
from cvkit.errors import CvkitError
from cvkit.export import export
from cvkit.predict import predict
from tests.helpers.cli import evaluate_val, train_into
from tests.helpers.coco import cocoeval, cocoeval_stats, recall_at_iou_50
from tests.helpers.configs import compose_train, export_cfg
from tests.helpers.datasets import voc_subset
from tests.helpers.logs import csv_column, read_metrics, read_report, read_summary, tensorboard_tags
from tests.helpers.presets import DDP_CPU, tiny_detection
from tests.helpers.tasks import untrained_val_metrics


@pytest.fixture(scope="module")
def detection_run(bccd_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("detection") / "run"
    return run_dir, train_into(run_dir, *tiny_detection(bccd_voc))


def rescore(run_dir: Path) -> list[float]:
    """pycocotools on the run's ground_truth.json and predictions.json, as anyone would call it."""
    return cocoeval_stats(run_dir / "ground_truth.json", run_dir / "predictions.json")


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


def test_operating_point_agrees_with_the_written_files(detection_run: tuple[Path, str]) -> None:
    """At the model's own score_thresh (0.05, every written detection), each class's recall is pycocotools'
    recall at IoU 0.5 of the written files, the curves average to their AP50, and the confusion matrix holds
    every true box once."""
    run_dir, _ = detection_run
    report, metrics = read_report(run_dir), read_metrics(run_dir)
    truth = json.loads((run_dir / "ground_truth.json").read_text())
    by_hand = cocoeval(truth, run_dir / "predictions.json")
    names = {c["id"]: c["name"] for c in truth["categories"]}
    for category, recall in recall_at_iou_50(by_hand).items():
        assert report["val_operating_point"][names[category]]["recall"] == pytest.approx(recall), names[category]
    curves = report["val_pr_curves"]["classes"]
    scored = [name for name, row in report["val_operating_point"].items() if row["true_boxes"]]
    assert np.mean([np.mean(curves[name]["precision"]) for name in scored]) == pytest.approx(
        metrics["val/map_50"], abs=1e-3
    )
    counts = np.array(report["val_confusion_matrix"]["counts"])
    assert counts[:-1].sum() == sum(not a["iscrowd"] for a in truth["annotations"])
    assert report["val_confusion_matrix"]["classes"] == ["Platelets", "RBC", "WBC", "background"]
    assert 0 <= metrics["val/best_f1"] <= 1 and metrics["val/f1"] <= metrics["val/best_f1"] + 1e-6


def test_run_shows_boxes_and_per_class_ap(detection_run: tuple[Path, str]) -> None:
    run_dir, stdout = detection_run
    tags = tensorboard_tags(run_dir)
    assert {f"val/detections/{i}" for i in range(2)} <= set(tags["images"])
    assert {"val/pr_curves", "val/confusion_matrix"} <= set(tags["images"])
    assert "val AP per class" in stdout and "Platelets" in stdout
    assert "val precision, recall, F1 per class (last epoch; score >= 0.05, IoU 0.5)" in stdout
    report = read_report(run_dir)
    assert set(report["val_per_class_ap"]) == set(report["val_operating_point"]) == {"Platelets", "RBC", "WBC"}
    for name in ("pr_curves.png", "confusion_matrix.png"):
        assert Image.open(run_dir / name).size[0] > 200
    summary = read_summary(run_dir)
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
    ddp = [*DDP_CPU, "trainer.limit_val_batches=2", "trainer.limit_train_batches=2"]
    train_into(run_dir, *tiny_detection(bccd_voc), *ddp, "test_after_fit=false", "logger=csv")
    assert len(json.loads((run_dir / "ground_truth.json").read_text())["images"]) == 8
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    two_ranks, one = read_metrics(run_dir), evaluate_val(checkpoint, eval_dir, val_batches=4)
    for key in ("val/map", "val/map_50", "val/mar_100", "val/precision", "val/recall", "val/f1", "val/best_f1"):
        assert two_ranks[key] == pytest.approx(one[key], rel=1e-6), key
    assert rescore(run_dir) == rescore(eval_dir)
    assert read_report(run_dir)["val_confusion_matrix"] == read_report(eval_dir)["val_confusion_matrix"]


def test_predict_finds_what_validation_found(detection_run: tuple[Path, str], bccd_voc: Path) -> None:
    """cvkit.load on the trained checkpoint gives, for the val images, the detections the run scored."""
    run_dir, _ = detection_run
    files = {
        image["id"]: image["file_name"] for image in json.loads((run_dir / "ground_truth.json").read_text())["images"]
    }
    logged = json.loads((run_dir / "predictions.json").read_text())
    model = cvkit.load(run_dir / "checkpoints" / "last.ckpt", device="cpu")
    assert model.kind == "detection" and model.class_names == ["Platelets", "RBC", "WBC"]
    results = model.predict([bccd_voc / "JPEGImages" / files[i] for i in files], batch_size=2)
    assert sum(len(found.scores) for found in results) == len(logged) > 0
    for image_id, found in zip(files, results, strict=True):
        expected = sorted((p for p in logged if p["image_id"] == image_id), key=lambda p: -p["score"])
        assert found.scores.tolist() == pytest.approx([p["score"] for p in expected], abs=1e-4)
        assert (found.class_ids + 1).tolist() == [p["category_id"] for p in expected]
        xywh = np.concatenate([found.boxes[:, :2], found.boxes[:, 2:] - found.boxes[:, :2]], axis=1)
        assert xywh == pytest.approx(np.array([p["bbox"] for p in expected]).reshape(-1, 4), abs=1e-2)


def test_predict_and_onnx_export_of_a_detector(detection_run: tuple[Path, str], bccd_voc: Path, tmp_path: Path) -> None:
    run_dir, _ = detection_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    (tmp_path / "in").mkdir()
    for name in ("BloodImage_00000.jpg", "BloodImage_00001.jpg"):
        (tmp_path / "in" / name).write_bytes((bccd_voc / "JPEGImages" / name).read_bytes())
    options = {"device": "cpu", "batch_size": 2, "num_workers": 0, "top_k": 5, "score_thresh": 0.05, "draw": True}
    cfg = OmegaConf.create(
        {"ckpt_path": str(checkpoint), "input": str(tmp_path / "in"), "output": str(tmp_path / "out"), **options}
    )
    predict(cfg)
    images = json.loads((tmp_path / "out" / "images.json").read_text())
    assert [(i["file_name"], i["width"], i["height"]) for i in images["images"]] == [
        ("BloodImage_00000.jpg", 640, 480),
        ("BloodImage_00001.jpg", 640, 480),
    ]
    assert [c["name"] for c in images["categories"]] == ["Platelets", "RBC", "WBC"]
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert results and all(r["score"] >= 0.05 and r["image_id"] in (1, 2) for r in results)
    assert Image.open(tmp_path / "out" / "drawn" / "BloodImage_00001.jpg").size == (640, 480)

    output = tmp_path / "detector.onnx"
    done = export(export_cfg(checkpoint, output=str(output), images=str(tmp_path / "in")))
    assert done["difference"] <= 1e-3 and output.is_file()
    with pytest.raises(CvkitError, match="format=torchscript is not offered for detectors"):
        export(export_cfg(checkpoint, format="torchscript", images=str(tmp_path / "in")))


# Four real BCCD train images (about 60 boxes), learned and scored on themselves: 20 epochs of 2 steps.
LEARNING_IDS = ["BloodImage_00001", "BloodImage_00003", "BloodImage_00004", "BloodImage_00005"]
LEARNING_RUN = [
    "task=detection",
    "data=voc",
    "data.batch_size=2",
    "data.num_workers=0",
    "task.model.min_size=192",
    "task.model.max_size=256",
    "task.val_loss=false",
    "trainer.max_epochs=20",
    "optimizer.lr=0.02",
    "optimizer.base_batch_size=2",
    "logger=csv",
]


@pytest.mark.slow
def test_a_detector_learns_its_training_images(bccd_voc: Path, tmp_path: Path) -> None:
    """Faster R-CNN from scratch on 4 images: the loss falls and val mAP50 on those images climbs far above the
    untrained model's. About 2 minutes on a quiet 2-core CPU (3m50 with another job on both cores)."""
    root = voc_subset(bccd_voc, tmp_path / "voc", LEARNING_IDS)
    overrides = [*LEARNING_RUN, f"data.root={root}"]
    untrained = untrained_val_metrics(compose_train(tmp_path / "untrained", *overrides, "logger=none"))
    run_dir = tmp_path / "run"
    train_into(run_dir, *overrides)

    losses, map_50 = csv_column(run_dir, "train/loss_epoch"), csv_column(run_dir, "val/map_50")
    assert len(losses) == len(map_50) == 20
    assert losses[-1] < 0.7 * losses[0], losses  # here 2.9 -> 1.4
    # Untrained about 0.005 here, 0.51 after the 40 steps: far beyond seed noise.
    assert untrained["val/map_50"] < 0.05, untrained
    assert map_50[-1] >= max(0.3, untrained["val/map_50"] + 0.25), map_50
    assert max(map_50[-5:]) > max(map_50[:5]) + 0.2, map_50
