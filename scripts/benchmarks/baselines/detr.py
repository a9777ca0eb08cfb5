"""Hand-written D-FINE training on a Pascal VOC folder (BCCD) with Hugging Face transformers, without cvkit: the
baseline of

    cvkit-train experiment=bccd_detr data.root=ROOT trainer.max_epochs=1 test_after_fit=false task.log_images=0

The same work as that command: the VOC train/val splits and augmentations of the detection baseline
(:mod:`detection`), batches of 4 in 2 workers, each image resized to a 320 px square and normalised,
transformers' D-FINE (hidden width 128, 3 levels, 300 queries, 3 decoder layers) on timm's resnet18 through
transformers' own timm backbone, AdamW at 2.5e-4 x sqrt(4 / 32) with the backbone at 0.05 x that, weight
decay 1.25e-4 but none on 1-d parameters, gradients clipped at norm 0.1, a per-step warmup + cosine schedule,
each epoch the val loss and COCO box mAP (pycocotools) of the 100 best (query, class) pairs per image, and a
checkpoint (model + optimizer + scheduler + averaged model) at each epoch end; an exponential moving average
of the weights (decay 0.999, torch's ``AveragedModel``, updated after every step) is what validation scores.

    python scripts/benchmarks/baselines/detr.py --data /work/shared/data/BCCD --out /tmp/detr
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F
from detection import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOCDetection,
    coco_ground_truth,
    collate,
    lr_factor,
    pipeline,
    read_voc,
    seed_worker,
    to_device,
)
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from transformers import DFineConfig, DFineForObjectDetection, TimmBackboneConfig

BASE_LR, BASE_BATCH_SIZE, BACKBONE_FACTOR, WEIGHT_DECAY, CLIP, EMA_DECAY = 2.5e-4, 32, 0.05, 1.25e-4, 0.1, 0.999
DETECTIONS = 100


def build_model(num_classes: int) -> DFineForObjectDetection:
    """D-FINE on timm resnet18 (strides 8, 16, 32), the authors' N/S widths."""
    config = DFineConfig(
        num_labels=num_classes,
        backbone_config=TimmBackboneConfig(backbone="resnet18", out_indices=[2, 3, 4]),
        encoder_in_channels=[128, 256, 512],
        feat_strides=[8, 16, 32],
        num_feature_levels=3,
        decoder_in_channels=[128] * 3,
        d_model=128,
        encoder_hidden_dim=128,
        encoder_ffn_dim=512,
        decoder_ffn_dim=512,
        hidden_expansion=0.34,
        depth_mult=0.5,
        decoder_n_points=[3, 6, 3],
        num_queries=300,
        decoder_layers=3,
        freeze_backbone_batch_norms=False,
        initializer_bias_prior_prob=0.01,
    )
    return DFineForObjectDetection(config)


def batch(images: list[torch.Tensor], size: int) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    resized = [
        F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0] for image in images
    ]
    return (torch.stack(resized) - mean.to(images[0].device)) / std.to(images[0].device)


def labels(images: list[torch.Tensor], targets: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
    """Targets as transformers takes them: class 0..K-1, boxes (cx, cy, w, h) in fractions of the image."""
    out = []
    for image, target in zip(images, targets):
        height, width = image.shape[-2:]
        boxes = target["boxes"] / torch.tensor([width, height, width, height], device=image.device)
        centres = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
        out.append({"class_labels": target["labels"] - 1, "boxes": centres})
    return out


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Backbone and the rest, each with and without weight decay (none on 1-d parameters)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((".backbone." in name, parameter.ndim <= 1), []).append(parameter)
    return [
        {
            "params": params,
            "lr_factor": BACKBONE_FACTOR if backbone else 1.0,
            "weight_decay": 0.0 if flat else WEIGHT_DECAY,
        }
        for (backbone, flat), params in groups.items()
    ]


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, truth: COCO, limit: int, size: int) -> tuple[float, float]:
    """(mean val loss, COCO box mAP) over the first `limit` batches (0: all)."""
    results, evaluated, loss_sum, loss_images = [], [], 0.0, 0
    device = next(model.parameters()).device
    for batch_idx, (images, targets) in enumerate(loader):
        if limit and batch_idx == limit:
            break
        images, targets = to_device(images, targets, device)
        pixels = batch(images, size)
        model.train()  # training mode returns the losses; BatchNorm statistics stay as they are
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        loss_sum += float(model(pixel_values=pixels, labels=labels(images, targets)).loss) * len(images)
        loss_images += len(images)
        model.eval()
        output = model(pixel_values=pixels)
        classes = output.logits.shape[-1]
        scores, index = output.logits.sigmoid().flatten(1).topk(DETECTIONS, dim=1)
        boxes = output.pred_boxes.gather(1, (index // classes)[..., None].expand(-1, -1, 4))
        for image, target, score, label, box in zip(images, targets, scores, index % classes + 1, boxes):
            height, width = image.shape[-2:]
            scale = torch.tensor([width, height, width, height], device=device)
            xyxy = torch.cat([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2], dim=1) * scale
            xyxy = torch.min(xyxy.clamp(min=0), scale).double()
            evaluated.append(target["image_id"])
            keep = score >= 0.05
            for (x1, y1, x2, y2), s, c in zip(xyxy[keep].tolist(), score[keep].tolist(), label[keep].tolist()):
                results.append({"image_id": target["image_id"], "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "score": s})  # fmt: skip
    if not results:
        return loss_sum / loss_images, 0.0
    coco_eval = COCOeval(truth, truth.loadRes(results), iouType="bbox")
    coco_eval.params.imgIds = evaluated
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return loss_sum / loss_images, float(coco_eval.stats[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="VOC root: JPEGImages, Annotations, ImageSets")
    parser.add_argument("--out", type=Path, required=True, help="where the checkpoint is written")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit-batches", type=int, default=0, help="train and val batches per epoch (0: all)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    train_records, val_records = read_voc(args.data, "train"), read_voc(args.data, "val")
    classes = sorted({name for record in train_records for name in record["names"]})
    flip_and_colour = [A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(0.1, 0.1, p=0.5)]
    loaders = {
        split: DataLoader(
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
        for split, records, steps in (("train", train_records, flip_and_colour), ("val", val_records, []))
    }
    truth = coco_ground_truth(val_records, classes)

    model = build_model(len(classes)).to(device)
    print(f"D-FINE resnet18: {sum(p.numel() for p in model.parameters())} parameters")
    lr = BASE_LR * math.sqrt(args.batch_size / BASE_BATCH_SIZE)
    groups = parameter_groups(model)
    for group in groups:
        group["lr"] = lr * group.pop("lr_factor")
    optimizer = torch.optim.AdamW(groups, lr=lr)
    steps_per_epoch = min(len(loaders["train"]), args.limit_batches or len(loaders["train"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, args.epochs))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY), use_buffers=True)
    print(f"lr {lr:g} ({BASE_LR} x sqrt({args.batch_size} / {BASE_BATCH_SIZE})), {steps_per_epoch} steps per epoch")

    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for step, (images, targets) in enumerate(loaders["train"]):
            if step == steps_per_epoch:
                break
            images, targets = to_device(images, targets, device)
            loss = model(pixel_values=batch(images, args.size), labels=labels(images, targets)).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
            scheduler.step()
            ema.update_parameters(model)
            if step % 10 == 0:
                print(f"epoch {epoch} step {step}/{steps_per_epoch} loss {loss.item():.4f}", flush=True)
        val_loss, val_map = evaluate(ema.module, loaders["val"], truth, args.limit_batches, args.size)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "ema": ema.state_dict()}  # fmt: skip
        torch.save({**state, "epoch": epoch}, args.out / "last.pt")
        print(f"epoch {epoch}: val/loss {val_loss:.4f} val/map {val_map:.4f} ({time.perf_counter() - start:.1f} s)")
    print(f"final val/map {val_map:.4f}")


if __name__ == "__main__":
    main()
