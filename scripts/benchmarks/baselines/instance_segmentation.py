"""Hand-written Mask R-CNN training on COCO instances files (coco128), without cvkit: the baseline of

    cvkit-train task=instance_segmentation data=coco_instances data.train_images=DIR data.train_annotations=FILE
      data.val_images=DIR data.val_annotations=FILE backbone=resnet backbone.name=resnet18
      task.model.min_size=256 task.model.max_size=352 trainer.max_epochs=1 test_after_fit=false task.log_images=0

The same work as that command: the COCO file's images with their polygon and RLE masks drawn by pycocotools
(crowd objects left out of training, kept for the metric), horizontal flip + brightness/contrast moving each
mask with its box, batches of 4 in 2 workers, torchvision's Mask R-CNN on timm resnet18 maps + FPN (the
detection baseline's, :mod:`detection`), SGD at 0.02 x 4 / 16 with a per-step warmup + cosine schedule,
each epoch the val loss and COCO box and mask mAP (pycocotools, masks scored without their boxes), and a
checkpoint (model + optimizer + scheduler) at each epoch end.

    python scripts/benchmarks/baselines/instance_segmentation.py --images ../shared/data/coco128/images/train2017 \
      --annotations ../shared/data/coco128/annotations/instances_train2017.json --out /tmp/mask
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import random
import time
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from detection import (
    BASE_BATCH_SIZE,
    BASE_LR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_SIZE,
    MIN_SIZE,
    MOMENTUM,
    WEIGHT_DECAY,
    TimmFPN,
    collate,
    lr_factor,
    pipeline,
    seed_worker,
    to_device,
)
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign


class CocoInstances(Dataset):
    """(image tensor, {"boxes", "labels", "masks", "image_id"}) of each image of a COCO file; labels 1..K in
    sorted category id order; crowd objects left out."""

    def __init__(self, coco: COCO, images: Path, transform: A.Compose) -> None:
        self.coco, self.images, self.transform = coco, images, transform
        self.ids = sorted(coco.getImgIds())
        self.label_of = {category: label for label, category in enumerate(sorted(coco.getCatIds()), 1)}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.ids[index]
        entry = self.coco.imgs[image_id]
        image = cv2.cvtColor(cv2.imread(str(self.images / entry["file_name"])), cv2.COLOR_BGR2RGB)
        objects = [o for o in self.coco.imgToAnns[image_id] if not o["iscrowd"]]
        boxes = np.array([o["bbox"] for o in objects], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        extra = {"masks": np.stack([self.coco.annToMask(o) for o in objects])} if objects else {}
        out = self.transform(image=image, bboxes=boxes, labels=np.arange(len(objects)), **extra)
        kept = np.asarray(out["labels"], dtype=np.int64)
        height, width = out["image"].shape[1:]
        masks = out["masks"][torch.as_tensor(kept)] if objects else torch.zeros((0, height, width), dtype=torch.uint8)
        filled = masks.flatten(1).any(dim=1)
        target = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4))[filled],
            "labels": torch.as_tensor([self.label_of[objects[i]["category_id"]] for i in kept], dtype=torch.int64)[
                filled
            ],
            "masks": masks[filled],
            "image_id": image_id,
        }
        return out["image"], target


def build_model(num_classes: int) -> MaskRCNN:
    """Mask R-CNN for `num_classes` + background on the detection baseline's timm FPN, torchvision's heads."""
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 4)
    levels = ["0", "1", "2", "3"]
    return MaskRCNN(
        TimmFPN("resnet18"),
        num_classes=num_classes + 1,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(levels, 7, sampling_ratio=2),
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, sampling_ratio=2),
    )


def coco_scores(coco: COCO, results: list[dict[str, Any]], evaluated: list[int], iou_type: str) -> float:
    """COCO mAP@[.5:.95] of `results` over the images `evaluated`."""
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    truth = copy.deepcopy(coco)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(truth, truth.loadRes(copy.deepcopy(results)), iouType=iou_type)
        coco_eval.params.imgIds = evaluated
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return float(coco_eval.stats[0])


@torch.inference_mode()
def evaluate(model: MaskRCNN, loader: DataLoader, coco: COCO, limit: int, device: torch.device) -> tuple[float, ...]:
    """(mean val loss, box mAP, mask mAP) over the first `limit` batches (0: all)."""
    categories = sorted(coco.getCatIds())
    results, evaluated, loss_sum, loss_images = [], [], 0.0, 0
    for batch_idx, (images, targets) in enumerate(loader):
        if limit and batch_idx == limit:
            break
        images, targets = to_device(images, targets, device)
        model.train()  # training mode returns the losses; BatchNorm statistics stay as they are
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        loss_sum += float(sum(model(images, targets).values())) * len(images)
        loss_images += len(images)
        model.eval()
        for target, found in zip(targets, model(images)):
            evaluated.append(target["image_id"])
            boxes = found["boxes"].cpu().double()
            boxes[:, 2:] -= boxes[:, :2]
            binary = (found["masks"][:, 0] >= 0.5).cpu().numpy().astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(binary) else []
            for box, score, label, rle in zip(boxes.tolist(), found["scores"].tolist(), found["labels"].tolist(), rles):
                rle["counts"] = rle["counts"].decode("ascii")
                category = categories[label - 1]
                results.append({"image_id": target["image_id"], "category_id": category, "bbox": box, "score": score,
                                "segmentation": rle})  # fmt: skip
    if not results:
        return loss_sum / loss_images, 0.0, 0.0
    return (
        loss_sum / loss_images,
        coco_scores(coco, results, evaluated, "bbox"),
        coco_scores(coco, results, evaluated, "segm"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="the image folder of the COCO file")
    parser.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON (train and val)")
    parser.add_argument("--out", type=Path, required=True, help="where the checkpoint is written")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit-batches", type=int, default=0, help="train and val batches per epoch (0: all)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(args.annotations))
    flip_and_colour = [A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(0.1, 0.1, p=0.5)]
    loaders = {
        split: DataLoader(
            CocoInstances(coco, args.images, pipeline(steps)),
            batch_size=args.batch_size,
            shuffle=split == "train",
            drop_last=split == "train",
            num_workers=args.workers,
            collate_fn=collate,
            worker_init_fn=seed_worker,
            persistent_workers=args.workers > 0,
            generator=torch.Generator().manual_seed(args.seed),
        )
        for split, steps in (("train", flip_and_colour), ("val", []))
    }
    model = build_model(len(coco.getCatIds())).to(device)
    print(f"Mask R-CNN resnet18 FPN: {sum(p.numel() for p in model.parameters())} parameters")
    lr = BASE_LR * args.batch_size / BASE_BATCH_SIZE
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = min(len(loaders["train"]), args.limit_batches or len(loaders["train"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, args.epochs))
    print(f"lr {lr:g} ({BASE_LR} x {args.batch_size} / {BASE_BATCH_SIZE}), {steps_per_epoch} steps per epoch")

    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for step, (images, targets) in enumerate(loaders["train"]):
            if step == steps_per_epoch:
                break
            images, targets = to_device(images, targets, device)
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % 10 == 0:
                print(f"epoch {epoch} step {step}/{steps_per_epoch} loss {loss.item():.4f}", flush=True)
        val_loss, box_map, mask_map = evaluate(model, loaders["val"], coco, args.limit_batches, device)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save({**state, "epoch": epoch}, args.out / "last.pt")
        took = time.perf_counter() - start
        print(
            f"epoch {epoch}: val/loss {val_loss:.4f} val/map {box_map:.4f} val/segm_map {mask_map:.4f} ({took:.1f} s)"
        )


if __name__ == "__main__":
    main()
