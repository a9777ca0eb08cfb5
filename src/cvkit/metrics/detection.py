"""COCO-style box detection metrics: torchvision detector outputs scored by pycocotools against the split's
ground truth.

One evaluator per evaluation of a split: ``update()`` once per batch, ``gather()`` on every rank, then
``compute()`` and ``per_class_ap()``. Example, label 1 -> category 3::

    evaluator = CocoEvaluator(ground_truth, label_to_category=[3, 7, 11])
    evaluator.update([42], [{"boxes": tensor([[10.0, 20.0, 110.0, 70.0]]), "scores": tensor([0.9]),
                             "labels": tensor([1])}])
    evaluator.results()
    # [{"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.9...}]
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

log = logging.getLogger(__name__)

# COCOeval.stats[0..11], in order.
STAT_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """Send pycocotools' prints inside the block to this module's logger, at debug level."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        if printed.getvalue().strip():
            log.debug(printed.getvalue().rstrip())


def coco_from_dict(dataset: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` indexing a copy of `dataset`."""
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    coco.dataset.setdefault("info", {})
    with quietly():
        coco.createIndex()
    return coco


class CocoEvaluator:
    """Accumulates one evaluation's predictions and scores them with pycocotools against the split's ground truth.

    `ground_truth` is a COCO-format dict (``images``, ``annotations`` with ``bbox`` as ``[x, y, w, h]``,
    ``area`` and ``iscrowd``, ``categories`` with ``name``); iscrowd=1 boxes (VOC "difficult") are neither
    required nor penalised. Annotation ids must be non-zero: pycocotools reads a match with id 0 as no match.
    Model label ``i`` (1-based, 0 is background) is category ``label_to_category[i - 1]``.
    """

    def __init__(self, ground_truth: dict[str, Any], label_to_category: Sequence[int]) -> None:
        categories = {category["id"]: category["name"] for category in ground_truth["categories"]}
        unknown = sorted(set(label_to_category) - set(categories))
        if unknown:
            raise ValueError(f"label_to_category holds ids {unknown} missing from the ground truth's categories")
        if any(annotation["id"] == 0 for annotation in ground_truth["annotations"]):
            raise ValueError("ground-truth annotation ids must be non-zero (pycocotools ignores matches with id 0)")
        self.ground_truth = coco_from_dict(ground_truth)
        self.category_names = categories
        self.label_to_category = torch.tensor(list(label_to_category), dtype=torch.int64)
        self.image_ids = set(self.ground_truth.getImgIds())
        self.per_image: dict[int, list[dict[str, Any]]] = {}
        self.coco_eval: COCOeval | None = None

    def update(self, image_ids: Sequence[int], detections: Sequence[dict[str, torch.Tensor]]) -> None:
        """Add one batch: per image, ``boxes`` ``[N, 4]`` xyxy in original pixels, ``scores`` ``[N]`` and 1-based
        ``labels`` ``[N]``. An image with no detections still counts as evaluated; an image seen before keeps
        its first detections (cvkit's evaluation sampler gives each image once; DistributedSampler repeats images
        to even out the ranks)."""
        for image_id, detection in zip(image_ids, detections, strict=True):
            image_id = int(image_id)
            if image_id not in self.image_ids:
                raise ValueError(f"image id {image_id} is not in the ground truth's images")
            if image_id not in self.per_image:
                self.per_image[image_id] = self.to_results(image_id, detection)

    def to_results(self, image_id: int, detection: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """COCO results entries of one image's detections, at full float precision."""
        labels = detection["labels"].detach().cpu().long()
        if len(labels) and (labels.min() < 1 or labels.max() > len(self.label_to_category)):
            raise ValueError(f"detection labels must lie in 1..{len(self.label_to_category)}, got {labels.tolist()}")
        boxes = detection["boxes"].detach().cpu().double()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        categories = self.label_to_category[labels - 1].tolist()
        scores = detection["scores"].detach().cpu().double().tolist()
        return [
            {"image_id": image_id, "category_id": category, "bbox": box, "score": score}
            for category, box, score in zip(categories, xywh, scores)
        ]

    def gather(self) -> None:
        """Under torch.distributed with more than one process, give every rank all ranks' results (for an
        image evaluated on several ranks, the lowest rank's); otherwise nothing. Call on every rank."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        gathered: list[dict[int, list[dict[str, Any]]]] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, self.per_image)
        merged: dict[int, list[dict[str, Any]]] = {}
        for per_image in gathered:
            for image_id, results in per_image.items():
                merged.setdefault(image_id, results)
        self.per_image = merged

    def results(self) -> list[dict[str, Any]]:
        """The COCO results list (what predictions.json holds), ordered by image id."""
        return [result for image_id in sorted(self.per_image) for result in self.per_image[image_id]]

    def evaluated_ground_truth(self) -> dict[str, Any]:
        """The ground truth of the evaluated images only (what ground_truth.json holds): pycocotools given
        it and :meth:`results` reproduces :meth:`compute`."""
        dataset = self.ground_truth.dataset
        return {
            **dataset,
            "images": [image for image in dataset["images"] if image["id"] in self.per_image],
            "annotations": [a for a in dataset["annotations"] if a["image_id"] in self.per_image],
        }

    def compute(self) -> dict[str, float]:
        """COCO bbox AP/AR (`STAT_KEYS`) over the evaluated images; -1.0 where no ground truth qualifies
        (e.g. ``map_small`` without small boxes). No detections at all score 0."""
        if not self.per_image:
            raise RuntimeError("CocoEvaluator.compute() before any update(): no images were evaluated")
        results, dataset = self.results(), self.ground_truth.dataset
        if results:
            with quietly():
                predictions = self.ground_truth.loadRes(copy.deepcopy(results))  # loadRes edits its entries
        else:  # loadRes fails on an empty list
            predictions = coco_from_dict(
                {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            )
        coco_eval = COCOeval(self.ground_truth, predictions, iouType="bbox")
        coco_eval.params.imgIds = sorted(self.per_image)
        with quietly():
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        self.coco_eval = coco_eval
        return {key: float(value) for key, value in zip(STAT_KEYS, coco_eval.stats)}

    def per_class_ap(self) -> dict[str, dict[str, float]]:
        """After `compute`: ``{category name: {"ap": AP@[.5:.95], "ap_50": AP@.5}}`` (all areas, 100
        detections); -1.0 for a category without ground truth in the evaluated images."""
        if self.coco_eval is None:
            raise RuntimeError("CocoEvaluator.per_class_ap() before compute()")
        params = self.coco_eval.params
        # precision: [IoU threshold, recall, category, area range, max detections]
        precision = self.coco_eval.eval["precision"][:, :, :, params.areaRngLbl.index("all"), params.maxDets.index(100)]
        iou_50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
        return {
            self.category_names[category]: {
                "ap": mean_defined(precision[:, :, k]),
                "ap_50": mean_defined(precision[iou_50, :, k]),
            }
            for k, category in enumerate(params.catIds)
        }


def mean_defined(precision: np.ndarray) -> float:
    """Mean of the entries > -1 (pycocotools' "undefined"), or -1.0 when there are none."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else -1.0
