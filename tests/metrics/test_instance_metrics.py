"""COCO mask metrics (``segm``) of the evaluator against pycocotools run by hand, on real coco128 polygons and
crowd RLEs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from scipy import ndimage

from cvkit.metrics.detection import CocoEvaluator
from tests.helpers.coco import cocoeval_stats

IMAGE_IDS = [9, 25, 30, 34, 36, 42, 49, 61, 64, 71, 72, 73, 149]  # 149 has a crowd RLE


@pytest.fixture(scope="module")
def truth(coco128: Path) -> dict:
    """The real coco128 annotations of IMAGE_IDS, as a data module's ground_truth() gives them."""
    content = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    return {
        "images": [image for image in content["images"] if image["id"] in IMAGE_IDS],
        "annotations": [a for a in content["annotations"] if a["image_id"] in IMAGE_IDS],
        "categories": content["categories"],
    }


def predictions(truth: dict, erode: int = 0, drop_every: int = 0) -> tuple[list[int], list[dict]]:
    """Per image, its non-crowd objects as Mask R-CNN outputs: the true box, the true mask (``erode`` pixels
    thinner) as probabilities [N, 1, H, W], every `drop_every`-th object left out, scores falling."""
    coco = COCO()
    coco.dataset = json.loads(json.dumps(truth))
    coco.createIndex()
    categories = sorted(c["id"] for c in truth["categories"])
    ids, outputs = [], []
    for image in truth["images"]:
        objects = [a for a in coco.imgToAnns[image["id"]] if not a["iscrowd"]]
        objects = [a for i, a in enumerate(objects) if not drop_every or i % drop_every != drop_every - 1]
        masks = [coco.annToMask(a).astype(bool) for a in objects]
        if erode:
            masks = [ndimage.binary_erosion(m, iterations=erode) for m in masks]
        shape = (0, 1, image["height"], image["width"])
        ids.append(image["id"])
        outputs.append(
            {
                "boxes": torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in objects)]).reshape(
                    -1, 4
                ),
                "scores": torch.linspace(0.9, 0.5, len(objects)),
                "labels": torch.tensor([categories.index(a["category_id"]) + 1 for a in objects], dtype=torch.int64),
                "masks": torch.from_numpy(np.stack(masks)[:, None]).float() if masks else torch.zeros(shape),
            }
        )
    return ids, outputs


def evaluate(truth: dict, ids: list[int], outputs: list[dict]) -> tuple[CocoEvaluator, dict[str, float]]:
    evaluator = CocoEvaluator(truth, sorted(c["id"] for c in truth["categories"]), ("bbox", "segm"))
    evaluator.update(ids, outputs)
    return evaluator, evaluator.compute()


def test_true_masks_score_one_and_crowd_regions_cost_nothing(truth: dict) -> None:
    _, metrics = evaluate(truth, *predictions(truth))
    assert metrics["segm_map"] == pytest.approx(1.0) and metrics["map"] == pytest.approx(1.0)


def test_thinner_and_missing_masks_score_as_pycocotools_scores_the_written_results(truth: dict) -> None:
    evaluator, metrics = evaluate(truth, *predictions(truth, erode=2, drop_every=4))
    results = evaluator.results()
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)  # JSON-ready compressed RLE
    by_hand_segm = cocoeval_stats(truth, json.loads(json.dumps(results)), iou_type="segm")
    by_hand_bbox = cocoeval_stats(truth, json.loads(json.dumps(results)), iou_type="bbox")
    keys = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100"]
    assert [metrics[f"segm_{key}"] for key in keys] == pytest.approx(by_hand_segm[: len(keys)], abs=1e-12)
    assert [metrics[key] for key in keys] == pytest.approx(by_hand_bbox[: len(keys)], abs=1e-12)
    assert metrics["segm_map"] < 0.9 and metrics["map"] > metrics["segm_map"]  # boxes exact, masks eroded
    per_class = evaluator.per_class_ap()
    assert {"ap", "ap_50", "segm_ap", "segm_ap_50"} <= set(per_class["person"])


def test_the_ground_truth_given_is_not_changed_by_scoring(truth: dict) -> None:
    """pycocotools' evaluation turns polygons into RLEs and marks annotations ignored in what it indexes: the
    evaluator's ground truth (ground_truth.json) must stay as the user's file has it."""
    before = json.dumps(truth, sort_keys=True)
    evaluator, _ = evaluate(truth, *predictions(truth, erode=1))
    evaluator.compute()  # twice: the second scoring starts from the same truth
    assert json.dumps(evaluator.evaluated_ground_truth(), sort_keys=True) == before
