"""Does bf16 training on this CPU give the same result every time? Plain torch, no cvkit.

Trains a ResNet-18 (torchvision, 10 classes) for 4 SGD steps under bf16 autocast on one fixed batch of
32 x 3 x 16 x 16, from the same seed, ``--runs`` times, and prints how many distinct eval losses came out and how
many were NaN. A repeatable CPU gives 1 distinct and 0 NaN. On a KVM Intel Xeon with AMX (torch 2.14.1, two of
these running at once or one alone) every run that finished gave the same loss, but 18 of 180 ended in NaN; with
``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` (oneDNN without AMX) 0 of 140.

    python scripts/diagnostics/bf16_repeatability.py --runs 30
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python scripts/diagnostics/bf16_repeatability.py --runs 30
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
import torchvision


def eval_loss_after_training() -> float:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0125, momentum=0.9)
    batch = torch.Generator().manual_seed(1)
    images, targets = torch.randn(32, 3, 16, 16, generator=batch), torch.randint(0, 10, (32,), generator=batch)
    for _ in range(4):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        return F.cross_entropy(model(images).float(), targets).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    losses = [eval_loss_after_training() for _ in range(runs)]
    distinct = len({"nan" if math.isnan(loss) else loss for loss in losses})
    nans = sum(math.isnan(loss) for loss in losses)
    print(f"torch {torch.__version__}: {runs} identical runs, {distinct} distinct eval losses, {nans} NaN")


if __name__ == "__main__":
    main()
