"""Hand-written Faster R-CNN training on a Pascal VOC folder (BCCD), without cvkit: the baseline of

    cvkit-train experiment=bccd_detection data.root=ROOT trainer.max_epochs=1 test_after_fit=false task.log_images=0

The same work as that command: the VOC train/val splits (boxes 1-based, so xmin/ymin - 1; difficult boxes
left out of training and ignored by the metric), horizontal flip + brightness/contrast, batches of 4 in 2
workers, torchvision's Faster R-CNN on timm resnet18 maps at strides 8/16/32 + FPN (BatchNorm trained: no
pretrained weights), SGD at 0.02 x 4 / 16 (linear scaling), a per-step warmup + cosine schedule, each epoch
the val loss (a second forward pass, in training mode with BatchNorm in eval mode) and COCO box mAP
(pycocotools), and a checkpoint (model + optimizer + scheduler) at each epoch end.

    python scripts/benchmarks/baselines/detection.py --data /work/shared/data/BCCD --out /tmp/det
"""

from __future__ import annotations

import argparse
import math
import random
import time
import warnings
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import timm
import torch
from albumentations.pytorch import ToTensorV2
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

BASE_LR, BASE_BATCH_SIZE = 0.02, 16  # torchvision's detection recipe, scaled linearly to the batch
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
WARMUP_EPOCHS, WARMUP_START_FACTOR = 1, 0.1
MIN_SIZE, MAX_SIZE = 256, 352  # the detector resizes images inside: short side 256, long side at most 352
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# The val pipeline carries boxes (for the val loss) through no box-moving step: that's fine.
warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform to process it")


# Data.
def read_voc(root: Path, split: str) -> list[dict[str, Any]]:
    """The images of ``ImageSets/Main/<split>.txt`` with their boxes (xyxy, 0-based), class names and
    difficult flags."""
    records = []
    for image_id in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
        annotation = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        objects = annotation.findall("object")
        boxes = [[float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")] for obj in objects]
        records.append(
            {
                "path": root / "JPEGImages" / f"{image_id}.jpg",
                "width": int(annotation.find("size/width").text),
                "height": int(annotation.find("size/height").text),
                "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4) - [1, 1, 0, 0],
                "names": [obj.find("name").text for obj in objects],
                "difficult": np.array([obj.find("difficult").text == "1" for obj in objects], dtype=bool),
            }
        )
    return records


def trainable(record: dict[str, Any]) -> np.ndarray:
    """Which boxes of `record` take part in training: not difficult, with an area inside the image."""
    boxes = record["boxes"].copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, record["width"])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, record["height"])
    return ~record["difficult"] & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def pipeline(steps: list[A.BasicTransform]) -> A.Compose:
    """`steps` on the image and its boxes, then a CHW float tensor of 0..1 values (the detector normalises);
    boxes are clipped to the image and dropped when less than 30% of them is left inside."""
    boxes = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=0.3,
        min_width=1e-3,
        min_height=1e-3,
        clip=True,
        filter_invalid_bboxes=True,
    )
    return A.Compose([*steps, A.ToFloat(max_value=255.0), ToTensorV2()], bbox_params=boxes)


class VOCDetection(Dataset):
    """(image tensor, {"boxes", "labels", "image_id"}) of each record, labels 1..K in `classes` order."""

    def __init__(self, records: list[dict[str, Any]], classes: list[str], transform: A.Compose) -> None:
        self.records, self.classes, self.transform = records, classes, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        record = self.records[index]
        image = cv2.cvtColor(cv2.imread(str(record["path"])), cv2.COLOR_BGR2RGB)
        keep = trainable(record)
        labels = [self.classes.index(name) + 1 for name, kept in zip(record["names"], keep) if kept]
        out = self.transform(image=image, bboxes=record["boxes"][keep].astype(np.float32), labels=labels)
        target = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(out["labels"], dtype=np.int64).reshape(-1)),
            "image_id": index,
        }
        return out["image"], target


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


def seed_worker(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream (albumentations keeps its own RNG)."""
    info = get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


def coco_ground_truth(records: list[dict[str, Any]], classes: list[str]) -> COCO:
    """Every box of `records` in COCO form, image ids = positions; difficult boxes are crowd (ignored)."""
    images, annotations = [], []
    for image_id, record in enumerate(records):
        images.append({"id": image_id, "width": record["width"], "height": record["height"]})
        for (x0, y0, x1, y1), name, difficult in zip(record["boxes"], record["names"], record["difficult"]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": classes.index(name) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": int(difficult),
                }
            )
    coco = COCO()
    categories = [{"id": label, "name": name} for label, name in enumerate(classes, 1)]
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    coco.createIndex()
    return coco


# Model.
class TimmFPN(nn.Module):
    """timm resnet maps at strides 8, 16, 32 through an FPN (256 channels) with a max-pooled stride-64 level."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=(2, 3, 4))
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), 256, extra_blocks=LastLevelMaxPool())
        self.out_channels = 256

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(images))))


def build_model(num_classes: int) -> FasterRCNN:
    """Faster R-CNN for `num_classes` + background; one anchor size per level (4 x its stride), 3 ratios."""
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 4)
    return FasterRCNN(
        TimmFPN("resnet18"),
        num_classes=num_classes + 1,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        rpn_anchor_generator=anchors,
    )


def lr_factor(step: int, steps_per_epoch: int, epochs: int) -> float:
    """Linear warmup from 0.1 x over the first epoch, then cosine decay to 0, in fractional epochs."""
    epoch = step / steps_per_epoch
    if epoch < WARMUP_EPOCHS:
        return WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * epoch / WARMUP_EPOCHS
    progress = min((epoch - WARMUP_EPOCHS) / max(epochs - WARMUP_EPOCHS, 1e-12), 1.0)
    return 0.5 * (1 + math.cos(math.pi * progress))


# Loop.
def to_device(images: list[torch.Tensor], targets: list[dict[str, Any]], device: torch.device) -> tuple[list, list]:
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return images, targets


@torch.inference_mode()
def evaluate(
    model: FasterRCNN, loader: DataLoader, ground_truth: COCO, limit: int, val_loss: bool, device: torch.device
) -> tuple[float, float]:
    """(mean val loss, or NaN without `val_loss`; COCO box mAP@[.5:.95]) over the first `limit` batches (0: all)."""
    results, evaluated, loss_sum, loss_images = [], [], 0.0, 0
    for batch_idx, (images, targets) in enumerate(loader):
        if limit and batch_idx == limit:
            break
        images, targets = to_device(images, targets, device)
        if val_loss:  # training mode returns the losses; BatchNorm statistics stay as they are
            model.train()
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
            for box, score, label in zip(boxes.tolist(), found["scores"].tolist(), found["labels"].tolist()):
                results.append({"image_id": target["image_id"], "category_id": label, "bbox": box, "score": score})
    if not results:  # no detection at all scores 0
        return (loss_sum / loss_images if val_loss else math.nan), 0.0
    coco_eval = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
    coco_eval.params.imgIds = evaluated
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return (loss_sum / loss_images if val_loss else math.nan), float(coco_eval.stats[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="VOC root: JPEGImages, Annotations, ImageSets")
    parser.add_argument("--out", type=Path, required=True, help="where the checkpoint is written")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit-batches", type=int, default=0, help="train and val batches per epoch (0: all)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--val-loss", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    train_records, val_records = read_voc(args.data, "train"), read_voc(args.data, "val")
    classes = sorted({name for record in train_records for name in record["names"]})
    flip_and_colour = [A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(0.1, 0.1, p=0.5)]
    loaders = {}
    for split, records, steps in (("train", train_records, flip_and_colour), ("val", val_records, [])):
        loaders[split] = DataLoader(
            VOCDetection(records, classes, pipeline(steps)),
            batch_size=args.batch_size,
            shuffle=split == "train",
            drop_last=split == "train",
            num_workers=args.workers,
            collate_fn=collate,
            worker_init_fn=seed_worker,
            persistent_workers=args.workers > 0,
            generator=torch.Generator().manual_seed(args.seed),
        )
    ground_truth = coco_ground_truth(val_records, classes)

    model = build_model(len(classes)).to(device)
    print(f"Faster R-CNN resnet18 FPN: {sum(p.numel() for p in model.parameters())} parameters")
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
        val_loss, val_map = evaluate(model, loaders["val"], ground_truth, args.limit_batches, args.val_loss, device)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save({**state, "epoch": epoch}, args.out / "last.pt")
        print(f"epoch {epoch}: val/loss {val_loss:.4f} val/map {val_map:.4f} ({time.perf_counter() - start:.1f} s)")
    print(f"final val/map {val_map:.4f}")


if __name__ == "__main__":
    main()
