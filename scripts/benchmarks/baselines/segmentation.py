"""Hand-written U-Net training on CamVid (image + mask folders), without cvkit: the baseline of

    cvkit-train task=segmentation data=camvid data.root=ROOT backbone=resnet backbone.name=resnet18
        task.model.decoder=unet data.image_size=[96,128] data.batch_size=8 trainer.max_epochs=1
        test_after_fit=false task.log_images=0

The same work as that command: train/ + trainannot/ and val/ + valannot/ paired by file stem (masks of class
indices 0..10, 11 = unlabelled, ignored), a random resized crop to 96x128 (scale 0.5..1) + horizontal flip
for training and a resize to 96x128 for validation (ImageNet normalisation), batches of 8 in 2 workers, a
timm resnet18 encoder (all 5 maps) with a U-Net decoder (widths 256, 128, 64, 32), cross-entropy, SGD at
0.1 x 8 / 256 (linear scaling), a per-step warmup + cosine schedule, each epoch the val loss and mIoU at the
masks' own 360x480 size (logits upsampled), and a checkpoint (model + optimizer + scheduler) at each epoch end.

    python scripts/benchmarks/baselines/segmentation.py --data /work/shared/data/CamVid --out /tmp/seg
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info

# SegNet order: Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist.
NUM_CLASSES, IGNORE_INDEX = 11, 11
BASE_LR, BASE_BATCH_SIZE = 0.1, 256  # scaled linearly to the batch
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
WARMUP_EPOCHS, WARMUP_START_FACTOR = 1, 0.1
DECODER_WIDTHS = [256, 128, 64, 32]  # coarse to fine, one per encoder skip
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# Data.
class MaskFolders(Dataset):
    """(normalised image tensor, int64 mask) pairs of ``<split>/*.jpg`` and ``<split>annot/*.png``. With
    `augment` the transform moves image and mask together; otherwise only the image is transformed and the
    mask keeps its original size."""

    def __init__(self, root: Path, split: str, transform: A.Compose, augment: bool) -> None:
        self.images = sorted((root / split).glob("*.jpg"))
        self.masks = [root / f"{split}annot" / f"{image.stem}.png" for image in self.images]
        self.transform, self.augment = transform, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = cv2.cvtColor(cv2.imread(str(self.images[index])), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(self.masks[index]), cv2.IMREAD_UNCHANGED)
        if self.augment:
            out = self.transform(image=image, mask=mask)
            return out["image"], out["mask"].long()
        return self.transform(image=image)["image"], torch.from_numpy(mask).long()


def seed_worker(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream (albumentations keeps its own RNG)."""
    info = get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


# Model.
def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two padded 3x3 convolutions, each followed by BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """timm encoder maps (strides 2..32); from the coarsest, each decoder step upsamples to the next finer
    map, concatenates it and applies a conv block; a 1x1 classifier, logits resized to the input."""

    def __init__(self, encoder: str, num_classes: int) -> None:
        super().__init__()
        self.encoder = timm.create_model(encoder, pretrained=False, features_only=True)
        channels = self.encoder.feature_info.channels()
        skips = channels[-2::-1]
        ins = [channels[-1], *DECODER_WIDTHS[:-1]]
        self.decoder = nn.ModuleList(conv_block(i + s, w) for i, s, w in zip(ins, skips, DECODER_WIDTHS))
        self.classifier = nn.Conv2d(DECODER_WIDTHS[-1], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        *skips, x = self.encoder(images)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return F.interpolate(self.classifier(x), size=images.shape[-2:], mode="bilinear", align_corners=False)


def lr_factor(step: int, steps_per_epoch: int, epochs: int) -> float:
    """Linear warmup from 0.1 x over the first epoch, then cosine decay to 0, in fractional epochs."""
    epoch = step / steps_per_epoch
    if epoch < WARMUP_EPOCHS:
        return WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * epoch / WARMUP_EPOCHS
    progress = min((epoch - WARMUP_EPOCHS) / max(epochs - WARMUP_EPOCHS, 1e-12), 1.0)
    return 0.5 * (1 + math.cos(math.pi * progress))


# Loop.
@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, limit: int, device: torch.device) -> tuple[float, float]:
    """(mean val loss, mIoU) over the first `limit` batches (0: all), at the masks' own size; the mIoU is
    of one confusion matrix over all pixels, averaged over the classes present in target or prediction."""
    model.eval()
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64, device=device)
    loss_sum, images_seen = 0.0, 0
    for batch_idx, (images, masks) in enumerate(loader):
        if limit and batch_idx == limit:
            break
        images, masks = images.to(device), masks.to(device)
        logits = F.interpolate(model(images), size=masks.shape[-2:], mode="bilinear", align_corners=False)
        loss_sum += F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX).item() * len(images)
        images_seen += len(images)
        counted = masks != IGNORE_INDEX
        cells = masks[counted] * NUM_CLASSES + logits.argmax(dim=1)[counted]
        confusion += torch.bincount(cells, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)
    matrix = confusion.double()
    iou = matrix.diagonal() / (matrix.sum(0) + matrix.sum(1) - matrix.diagonal())
    return loss_sum / images_seen, float(iou.nanmean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="CamVid root: train, trainannot, val, valannot")
    parser.add_argument("--out", type=Path, required=True, help="where the checkpoint is written")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit-batches", type=int, default=0, help="train and val batches per epoch (0: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, nargs=2, default=[96, 128], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    height, width = args.image_size
    normalise = [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]
    train_steps = [A.RandomResizedCrop(size=(height, width), scale=(0.5, 1.0)), A.HorizontalFlip(p=0.5)]
    transforms = {
        "train": A.Compose([*train_steps, *normalise]),
        "val": A.Compose([A.Resize(height, width), *normalise]),
    }
    loaders = {
        split: DataLoader(
            MaskFolders(args.data, split, transforms[split], augment=split == "train"),
            batch_size=args.batch_size,
            shuffle=split == "train",
            drop_last=split == "train",
            num_workers=args.workers,
            worker_init_fn=seed_worker,
            persistent_workers=args.workers > 0,
            generator=torch.Generator().manual_seed(args.seed),
        )
        for split in ("train", "val")
    }

    model = UNet("resnet18", NUM_CLASSES).to(device)
    print(f"U-Net resnet18: {sum(p.numel() for p in model.parameters())} parameters")
    lr = BASE_LR * args.batch_size / BASE_BATCH_SIZE
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = min(len(loaders["train"]), args.limit_batches or len(loaders["train"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, args.epochs))
    print(f"lr {lr:g} ({BASE_LR} x {args.batch_size} / {BASE_BATCH_SIZE}), {steps_per_epoch} steps per epoch")

    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for step, (images, masks) in enumerate(loaders["train"]):
            if step == steps_per_epoch:
                break
            images, masks = images.to(device), masks.to(device)
            loss = F.cross_entropy(model(images), masks, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % 10 == 0:
                print(f"epoch {epoch} step {step}/{steps_per_epoch} loss {loss.item():.4f}", flush=True)
        val_loss, val_miou = evaluate(model, loaders["val"], args.limit_batches, device)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save({**state, "epoch": epoch}, args.out / "last.pt")
        print(f"epoch {epoch}: val/loss {val_loss:.4f} val/miou {val_miou:.4f} ({time.perf_counter() - start:.1f} s)")
    print(f"final val/miou {val_miou:.4f}")


if __name__ == "__main__":
    main()
