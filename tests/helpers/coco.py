"""pycocotools' bbox scores, computed without cvkit, as anyone would on a run's files."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def cocoeval_stats(truth: Path | dict, results: Path | list[dict], image_ids: list[int] | None = None) -> list[float]:
    """COCOeval's 12 bbox stats (AP@[.5:.95], AP50, ..., AR@100 large) of detections `results` against ground
    truth `truth`, each a COCO JSON file or its content (not changed), over `image_ids` (None: all images)."""
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(truth, dict):
            coco = COCO()
            coco.dataset = copy.deepcopy(truth)
            coco.createIndex()
        else:
            coco = COCO(str(truth))
        detections = coco.loadRes(str(results) if isinstance(results, Path) else copy.deepcopy(results))
        evaluation = COCOeval(coco, detections, iouType="bbox")
        if image_ids is not None:
            evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(value) for value in evaluation.stats]
