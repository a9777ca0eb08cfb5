"""pycocotools' bbox scores, computed without cvkit, as anyone would on a run's files."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def cocoeval_stats(
    truth: Path | dict, results: Path | list[dict], image_ids: list[int] | None = None, iou_type: str = "bbox"
) -> list[float]:
    """COCOeval's 12 stats (AP@[.5:.95], AP50, ..., AR@100 large) of detections `results` against ground truth
    `truth`, each a COCO JSON file or its content (not changed), over `image_ids` (None: all images). With
    `iou_type` "segm" the results' masks are scored, their boxes removed first (detectron2's way: otherwise
    pycocotools sizes each prediction by its box)."""
    evaluation = cocoeval(truth, results, image_ids, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.summarize()
    return [float(value) for value in evaluation.stats]


def cocoeval(
    truth: Path | dict, results: Path | list[dict], image_ids: list[int] | None = None, iou_type: str = "bbox"
) -> COCOeval:
    """pycocotools' COCOeval of `results` against `truth` (as :func:`cocoeval_stats` takes them), evaluated and
    accumulated: its ``eval["precision"]`` [IoU, recall, category, area, max detections], ``eval["recall"]``."""
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(truth, dict):
            coco = COCO()
            coco.dataset = copy.deepcopy(truth)
            coco.createIndex()
        else:
            coco = COCO(str(truth))
        listed = json.loads(results.read_text()) if isinstance(results, Path) else copy.deepcopy(results)
        if iou_type == "segm":
            listed = [{key: value for key, value in result.items() if key != "bbox"} for result in listed]
        detections = coco.loadRes(listed)
        evaluation = COCOeval(coco, detections, iouType=iou_type)
        if image_ids is not None:
            evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def recall_at_iou_50(evaluation: COCOeval) -> dict[int, float]:
    """Per category id, pycocotools' recall at IoU 0.5 (all areas, 100 detections per image)."""
    iou_50 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.5)))
    return {c: float(evaluation.eval["recall"][iou_50, k, 0, -1]) for k, c in enumerate(evaluation.params.catIds)}
