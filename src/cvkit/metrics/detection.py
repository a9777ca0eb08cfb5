"""COCO-style detection metrics: torchvision detector outputs scored by pycocotools against the split's
ground truth, by box (``bbox``) and, for instance segmentation, by mask (``segm``).

One evaluator per evaluation of a split: ``update()`` once per batch, ``gather()`` on every rank, then
``compute()`` and ``per_class_ap()``. Example, label 1 -> category 3::

    evaluator = CocoEvaluator(ground_truth, label_to_category=[3, 7, 11])
    evaluator.update([42], [{"boxes": tensor([[10.0, 20.0, 110.0, 70.0]]), "scores": tensor([0.9]),
                             "labels": tensor([1])}])
    evaluator.results()
    # [{"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.9...}]

After ``compute()``, ``operating_point(score_thresh)`` gives precision, recall, F1, a confusion matrix and
precision-recall curves (:mod:`cvkit.metrics.operating_point`).
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
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cvkit.metrics.operating_point import operating_point

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
# The prefix of each kind of evaluation's metric keys: box metrics keep the plain names detection has always had.
IOU_TYPE_PREFIX = {"bbox": "", "segm": "segm_"}
MASK_THRESHOLD = 0.5  # a predicted mask's pixels at or above this probability are the object (torchvision's)


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
    Model label ``i`` (1-based, 0 is background) is category ``label_to_category[i - 1]``. With `iou_types`
    ``("bbox", "segm")`` (instance segmentation), detections carry ``masks`` and the ground truth's annotations
    their ``segmentation``; masks are scored too, as ``segm_map``, ``segm_map_50``, ...
    """

    def __init__(
        self, ground_truth: dict[str, Any], label_to_category: Sequence[int], iou_types: Sequence[str] = ("bbox",)
    ) -> None:
        if unknown := sorted(set(iou_types) - set(IOU_TYPE_PREFIX)):
            raise ValueError(f"iou_types {unknown} are not pycocotools' {list(IOU_TYPE_PREFIX)}")
        self.iou_types = tuple(iou_types)
        categories = {category["id"]: category["name"] for category in ground_truth["categories"]}
        unknown = sorted(set(label_to_category) - set(categories))
        if unknown:
            raise ValueError(f"label_to_category holds ids {unknown} missing from the ground truth's categories")
        if any(annotation["id"] == 0 for annotation in ground_truth["annotations"]):
            raise ValueError("ground-truth annotation ids must be non-zero (pycocotools ignores matches with id 0)")
        self.ground_truth = copy.deepcopy(ground_truth)  # as given: pycocotools' evaluation edits what it indexes
        self.category_names = categories
        self.label_to_category = torch.tensor(list(label_to_category), dtype=torch.int64)
        self.image_ids = {image["id"] for image in ground_truth["images"]}
        self.per_image: dict[int, list[dict[str, Any]]] = {}
        self.coco_evals: dict[str, COCOeval] = {}

    def update(self, image_ids: Sequence[int], detections: Sequence[dict[str, torch.Tensor]]) -> None:
        """Add one batch: per image, ``boxes`` ``[N, 4]`` xyxy in original pixels, ``scores`` ``[N]``, 1-based
        ``labels`` ``[N]`` and, when masks are scored, ``masks`` ``[N, 1, H, W]`` (probabilities, binarised at
        :data:`MASK_THRESHOLD`) at the image's size. An image with no detections still counts as evaluated; an
        image seen before keeps its first detections (cvkit's evaluation sampler gives each image once;
        DistributedSampler repeats images to even out the ranks)."""
        for image_id, detection in zip(image_ids, detections, strict=True):
            image_id = int(image_id)
            if image_id not in self.image_ids:
                raise ValueError(f"image id {image_id} is not in the ground truth's images")
            if image_id not in self.per_image:
                self.per_image[image_id] = self.to_results(image_id, detection)

    def to_results(self, image_id: int, detection: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """COCO results entries of one image's detections, at full float precision; with masks, each entry's
        ``segmentation`` is its binarised mask as a compressed RLE (``counts`` a string, as JSON keeps it)."""
        labels = detection["labels"].detach().cpu().long()
        if len(labels) and (labels.min() < 1 or labels.max() > len(self.label_to_category)):
            raise ValueError(f"detection labels must lie in 1..{len(self.label_to_category)}, got {labels.tolist()}")
        boxes = detection["boxes"].detach().cpu().double()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        categories = self.label_to_category[labels - 1].tolist()
        scores = detection["scores"].detach().cpu().double().tolist()
        results = [
            {"image_id": image_id, "category_id": category, "bbox": box, "score": score}
            for category, box, score in zip(categories, xywh, scores)
        ]
        if "segm" in self.iou_types and results:  # (an image without detections may come without masks)
            for result, region in zip(results, encode_masks(binary_masks(detection["masks"])), strict=True):
                result["segmentation"] = region
        return results

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
        dataset = self.ground_truth
        return {
            **dataset,
            "images": [image for image in dataset["images"] if image["id"] in self.per_image],
            "annotations": [a for a in dataset["annotations"] if a["image_id"] in self.per_image],
        }

    def compute(self) -> dict[str, float]:
        """COCO AP/AR (`STAT_KEYS`) over the evaluated images, of each of the `iou_types` (mask metrics prefixed
        ``segm_``); -1.0 where no ground truth qualifies (e.g. ``map_small`` without small objects). No
        detections at all score 0."""
        if not self.per_image:
            raise RuntimeError("CocoEvaluator.compute() before any update(): no images were evaluated")
        metrics = {}
        for iou_type in self.iou_types:
            coco_eval = self._evaluate(iou_type)
            prefix = IOU_TYPE_PREFIX[iou_type]
            metrics.update({prefix + key: float(value) for key, value in zip(STAT_KEYS, coco_eval.stats)})
            self.coco_evals[iou_type] = coco_eval
        return metrics

    def _evaluate(self, iou_type: str) -> COCOeval:
        """pycocotools' evaluation of the results by `iou_type`. Mask results are scored without their box, as
        detectron2 does: given both, pycocotools takes each prediction's area (which decides small, medium and
        large) from the box."""
        results, truth = self.results(), coco_from_dict(self.ground_truth)  # a fresh copy: evaluate() edits it
        if iou_type == "segm":
            results = [{key: value for key, value in result.items() if key != "bbox"} for result in results]
        if results:
            with quietly():
                predictions = truth.loadRes(copy.deepcopy(results))  # loadRes edits its entries
        else:  # loadRes fails on an empty list
            predictions = coco_from_dict(
                {
                    "images": self.ground_truth["images"],
                    "categories": self.ground_truth["categories"],
                    "annotations": [],
                }
            )
        coco_eval = COCOeval(truth, predictions, iouType=iou_type)
        coco_eval.params.imgIds = sorted(self.per_image)
        with quietly():
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return coco_eval

    def per_class_ap(self) -> dict[str, dict[str, float]]:
        """After `compute`: ``{category name: {"ap": AP@[.5:.95], "ap_50": AP@.5}}`` (all areas, 100
        detections; mask APs as ``segm_ap``, ``segm_ap_50``); -1.0 for a category without ground truth in the
        evaluated images."""
        if not self.coco_evals:
            raise RuntimeError("CocoEvaluator.per_class_ap() before compute()")
        per_class: dict[str, dict[str, float]] = {}
        for iou_type, coco_eval in self.coco_evals.items():
            prefix, params = IOU_TYPE_PREFIX[iou_type], coco_eval.params
            # precision: [IoU threshold, recall, category, area range, max detections]
            precision = coco_eval.eval["precision"][:, :, :, params.areaRngLbl.index("all"), params.maxDets.index(100)]
            iou_50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
            for k, category in enumerate(params.catIds):
                per_class.setdefault(self.category_names[category], {}).update(
                    {
                        prefix + "ap": mean_defined(precision[:, :, k]),
                        prefix + "ap_50": mean_defined(precision[iou_50, :, k]),
                    }
                )
        return per_class

    def operating_point(self, score_thresh: float) -> dict[str, Any]:
        """After `compute`: the boxes' precision, recall and F1 at `score_thresh` and at the best F1, the
        confusion matrix with background and the precision-recall curves of the evaluated images
        (:func:`cvkit.metrics.operating_point.operating_point`)."""
        if "bbox" not in self.coco_evals:
            raise RuntimeError("CocoEvaluator.operating_point() before compute()")
        truth: dict[int, list[dict[str, Any]]] = {}
        for annotation in self.ground_truth["annotations"]:
            if annotation["image_id"] in self.per_image:
                truth.setdefault(annotation["image_id"], []).append(annotation)
        classes = [(category, self.category_names[category]) for category in self.label_to_category.tolist()]
        return operating_point(self.coco_evals["bbox"], truth, self.per_image, classes, score_thresh)


def binary_masks(masks: torch.Tensor) -> np.ndarray:
    """Predicted masks ``[N, 1, H, W]`` (probabilities) as bool ``[N, H, W]``: the pixels at or above
    :data:`MASK_THRESHOLD`."""
    return (masks.detach().cpu()[:, 0] >= MASK_THRESHOLD).numpy()


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLEs (``{"size": [H, W], "counts": str}``, as COCO results files hold them) of bool masks
    ``[N, H, W]``."""
    regions = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))) if len(masks) else []
    return [{"size": list(region["size"]), "counts": region["counts"].decode("ascii")} for region in regions]


def mean_defined(precision: np.ndarray) -> float:
    """Mean of the entries > -1 (pycocotools' "undefined"), or -1.0 when there are none."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else -1.0
