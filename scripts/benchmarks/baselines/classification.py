"""A hand-written classification training script: what a competent user writes instead of cvkit.

The same work as ``cvkit-train experiment=bccd_cells data.root=ROOT trainer.max_epochs=2 test_after_fit=false``:
an image folder (``ROOT/{train,val}/<class>/*``) decoded with OpenCV, albumentations RandomResizedCrop (scale
0.5-1) + horizontal flip for training and a resize for validation, ImageNet normalisation, timm's ResNet-18
from scratch, SGD (momentum 0.9, weight decay 5e-4) at the linearly scaled LR 0.1 x batch / 256, one epoch
of linear warmup from 0.1x then cosine decay to 0, stepped per optimizer step; validation accuracy and a
``last.pt`` checkpoint (model, optimizer, schedule, epoch) at every epoch end.

    python scripts/benchmarks/baselines/classification.py --data ../shared/data/bccd_cells --out /tmp/plain
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import albumentations as A
import cv2
import timm
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset

cv2.setNumThreads(0)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolder(Dataset):
    """``split/<class>/<image>`` files, decoded with OpenCV and passed through an albumentations pipeline."""

    def __init__(self, split: Path, pipeline: A.Compose) -> None:
        self.classes = sorted(d.name for d in split.iterdir() if d.is_dir())
        self.samples = [
            (str(f), c) for c, name in enumerate(self.classes) for f in sorted((split / name).glob("*.jpg"))
        ]
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return self.pipeline(image=image)["image"], label


def loaders(root: Path, size: int, batch: int, workers: int) -> tuple[DataLoader, DataLoader]:
    train = A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.5, 1.0)),
            A.HorizontalFlip(),
            A.Normalize(MEAN, STD),
            ToTensorV2(),
        ]
    )
    val = A.Compose([A.Resize(size, size), A.Normalize(MEAN, STD), ToTensorV2()])
    options = {"batch_size": batch, "num_workers": workers, "persistent_workers": workers > 0}
    return (
        DataLoader(ImageFolder(root / "train", train), shuffle=True, drop_last=True, **options),
        DataLoader(ImageFolder(root / "val", val), **options),
    )


def warmup_cosine(steps_per_epoch: int, epochs: int, warmup_epochs: float = 1.0, start: float = 0.1):
    """The LR factor at each optimizer step: linear warmup from `start`, then cosine decay to 0."""

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        if epoch < warmup_epochs:
            return start + (1 - start) * epoch / warmup_epochs
        progress = min((epoch - warmup_epochs) / max(epochs - warmup_epochs, 1e-12), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1, help="for a batch of 256; scaled linearly")
    parser.add_argument("--limit-batches", type=int, default=0, help="train and val batches per epoch (0: all)")
    args = parser.parse_args()
    torch.manual_seed(42)
    train_loader, val_loader = loaders(args.data, args.image_size, args.batch_size, args.workers)
    model = timm.create_model("resnet18", pretrained=False, num_classes=len(train_loader.dataset.classes))
    lr = args.lr * args.batch_size / 256
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = min(len(train_loader), args.limit_batches or len(train_loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, args.epochs))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"resnet18, {len(train_loader.dataset)} train images, batch {args.batch_size}, lr {lr:g}", flush=True)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for step, (images, labels) in enumerate(train_loader):
            if step == steps:
                break
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        correct = seen = 0
        with torch.no_grad():
            for step, (images, labels) in enumerate(val_loader):
                if step == (args.limit_batches or len(val_loader)):
                    break
                correct += (model(images).argmax(1) == labels).sum().item()
                seen += len(labels)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}
        torch.save({**state, "epoch": epoch}, args.out / "last.pt")
        took = time.perf_counter() - start
        print(f"epoch {epoch}: loss {loss.item():.3f}, val acc {correct / seen:.4f} ({took:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
