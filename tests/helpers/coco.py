"""pycocotools' bbox scores, computed without cvkit, as anyone would on a run's files."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def cocoeval_stats(
    truth: Path | dict, results: Path | list[dict], image_ids: list[int] | None = None, iou_type: str = "bbox"
) -> list[float]:
    """COCOeval's 12 stats (AP@[.5:.95], AP50, ..., AR@100 large) of detections `results` against ground truth
    `truth`, each a COCO JSON file or its content (not changed), over `image_ids` (None: all images). With
    `iou_type` "segm" the results' masks are scored, their boxes removed first (detectron2's way: otherwise
    pycocotools sizes each prediction by its box)."""
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
        evaluation.summarize()
    return [float(value) for value in evaluation.stats]
