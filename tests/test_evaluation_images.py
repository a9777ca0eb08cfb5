"""Evaluation sets are what the data says they are: unreadable images are counted and named in metrics.json,
and detection scores the split's whole annotation file, as pycocotools does on the user's own file."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from cvkit.data import CocoDetectionDataModule
from cvkit.data.batches import Unreadable
from cvkit.train import train
from tests.helpers.coco import cocoeval_stats
from tests.helpers.configs import compose_train
from tests.helpers.datasets import corrupt_files, make_folder
from tests.helpers.logs import read_report
from tests.helpers.presets import ONE_STEP_FULL_VAL


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def coco_subset(coco128: Path, image_ids: list[int], images_dir: Path, annotations: Path) -> None:
    """The coco128 images `image_ids`, copied into `images_dir`, with their original entries in `annotations`."""
    content = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    images = [image for image in content["images"] if image["id"] in image_ids]
    images_dir.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy(coco128 / "images" / "train2017" / image["file_name"], images_dir)
    kept = [a for a in content["annotations"] if a["image_id"] in image_ids]
    annotations.write_text(json.dumps({**content, "images": images, "annotations": kept}))


def pixel_key(image: torch.Tensor) -> float:
    return round(float(image.double().sum()), 3)


class MemorizedDetector(nn.Module):
    """A stand-in detector that predicts the true (non-crowd) boxes of the images it was given, found by their
    pixels; in training mode, a zero loss with a gradient."""

    def __init__(self, answers: dict[float, dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.answers = answers

    def forward(self, images: list[torch.Tensor], targets: list | None = None) -> object:
        if self.training:
            return {"loss_memorized": self.weight.sum() * 0}
        none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
        return [self.answers.get(pixel_key(image), none) for image in images]


def memorized_answers(files: dict[str, str]) -> dict[float, dict[str, torch.Tensor]]:
    """The true boxes of each readable val image, keyed by its pixels as the val loader gives them."""
    module = CocoDetectionDataModule(**files, batch_size=1, num_workers=0)
    module.setup()
    val = module.make_dataset("val", train=False)
    answers = {}
    for position, record in enumerate(module.splits["val"]):
        sample = val[position]
        if isinstance(sample, Unreadable):
            continue
        own = ~record.iscrowd
        finished = module.image_finisher()([sample[0]])[0]  # as the detector gets it
        answers[pixel_key(finished)] = {
            "boxes": torch.as_tensor(record.boxes[own], dtype=torch.float32),
            "labels": torch.as_tensor(record.labels[own]),
            "scores": torch.full((int(own.sum()),), 0.9),
        }
    return answers


def coco_map(annotations: Path, predictions: Path, image_ids: list[int] | None = None) -> float:
    """pycocotools' bbox AP@[.5:.95] of `predictions` on `annotations` (all its images unless `image_ids`)."""
    return cocoeval_stats(annotations, predictions, image_ids)[0]


def test_detection_scores_the_whole_annotation_file_with_an_unreadable_image(
    coco128: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    val_ids, train_ids = [9, 25, 30, 34, 36, 42], [49, 61]
    coco_subset(coco128, val_ids, tmp_path / "val", tmp_path / "val.json")
    coco_subset(coco128, train_ids, tmp_path / "train", tmp_path / "train.json")
    truncated = tmp_path / "val" / "000000000025.jpg"
    truncate(truncated)
    files = {f"{split}_{kind}": str(tmp_path / (split if kind == "images" else f"{split}.json"))
             for split in ("train", "val") for kind in ("images", "annotations")}  # fmt: skip
    detector = MemorizedDetector(memorized_answers(files))
    monkeypatch.setattr("cvkit.models.networks.build_detector", lambda **_: detector)
    run_dir = tmp_path / "run"
    overrides = [f"data.{key}={value}" for key, value in files.items()]
    cfg = compose_train(run_dir, "task=detection", "data=coco", *overrides, *ONE_STEP_FULL_VAL, "data.batch_size=2")
    metrics, _ = train(cfg)

    report = read_report(run_dir)
    assert report["val_images"] == {"scored": 5, "total": 6, "unreadable": [str(truncated)]}
    on_their_file = coco_map(tmp_path / "val.json", run_dir / "predictions.json")
    assert metrics["val/map"] == pytest.approx(on_their_file, rel=1e-6)
    readable_only = coco_map(tmp_path / "val.json", run_dir / "predictions.json", [i for i in val_ids if i != 25])
    assert readable_only != pytest.approx(on_their_file)  # leaving the image out would change the score
    assert 25 in {image["id"] for image in json.loads((run_dir / "ground_truth.json").read_text())["images"]}
    assert f"val: scored 5 of 6 images; unreadable: {truncated}" in capsys.readouterr().out


def test_classification_counts_images_unreadable_when_loaded_or_read(bccd_cells: Path, tmp_path: Path) -> None:
    root = make_folder(bccd_cells, tmp_path / "cells", per_class=4)
    bad = corrupt_files(root / "val" / "RBC", next((root / "val" / "WBC").iterdir()))
    run_dir = tmp_path / "run"
    # The header check leaves out the empty and the text file; the truncated one fails in a loader worker.
    cfg = compose_train(
        run_dir, "data=imagefolder", f"data.root={root}", "data.image_size=16", *ONE_STEP_FULL_VAL, "data.num_workers=1"
    )
    train(cfg)
    counted = read_report(run_dir)["val_images"]
    assert counted["scored"] == 12 and counted["total"] == 15
    assert sorted(counted["unreadable"]) == sorted(str(path) for path in bad.values())
