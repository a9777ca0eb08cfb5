"""Train-loader throughput: cvkit's loader against the plain loaders a user would write on the same files.

Three loaders over the same image folder (``ROOT/train/<class>/*``), the same pipeline (RandomResizedCrop
to the size with scale [0.5, 1], horizontal flip, ImageNet normalisation, CHW float tensor), batch, workers
and shuffling:

  cvkit        cvkit's ``train_dataloader()``, built from the composed config as ``cvkit-train`` builds it
               (``data=imagefolder``): seeded sampler, per-sample augmentation seeds, unreadable-image
               handling. As for a CPU run, its workers finish each batch (float32, normalised: the batch the
               training step gets, as from the other loaders); a GPU run would finish it on the GPU.
               ``--decode-min-side`` adds its reduced-size decode.
  albumentations  the train loader of ``baselines/classification.py``: a hand-written Dataset,
               ``cv2.imread`` + ``cvtColor``, the albumentations pipeline, ``DataLoader(shuffle=True)``.
  torchvision  ``torchvision.datasets.ImageFolder`` (PIL decode) with the same steps in transforms.v2.

Each run makes a fresh loader and times whole epochs, worker start-up included (building it is not); loaders
run alternately, ``--repeats`` times, and the table gives the median images/s and the ratio to the
albumentations loader.

    python scripts/benchmarks/loaders.py --root ../shared/data/bccd_cells --sizes 64 224 --json loaders.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "baselines"))
from classification import loaders as plain_loaders
from common import cvkit_config, print_table, write_results

from cvkit.builders import build_datamodule

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Loader = Callable[[], DataLoader]


def albumentations_loader(root: Path, size: int, batch: int, workers: int) -> DataLoader:
    """The train loader of the hand-written classification baseline (``baselines/classification.py``)."""
    return plain_loaders(root, size, batch, workers)[0]


def torchvision_loader(root: Path, size: int, batch: int, workers: int) -> DataLoader:
    steps = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop((size, size), scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )
    folder = datasets.ImageFolder(root / "train", transform=steps)
    return DataLoader(folder, batch, shuffle=True, num_workers=workers, drop_last=True)


def cvkit_loader(root: Path, size: int, batch: int, workers: int, decode_min_side: int | None = None) -> DataLoader:
    cfg = cvkit_config(
        "data=imagefolder",
        f"data.root={root}",
        f"data.image_size={size}",
        f"data.batch_size={batch}",
        f"data.num_workers={workers}",
        f"data.decode_min_side={decode_min_side or 'null'}",
        "data.verify_images=none",
    )
    return build_datamodule(cfg).train_dataloader()  # no trainer: a CPU run's, finished in its workers


def images_per_second(make: Loader, epochs: int) -> float:
    """Images/s over `epochs` whole epochs of a fresh loader, its worker start-up included (listing the files
    and building the loader are not)."""
    loader = make()
    start, images = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            images += len(batch[0])
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/data/bccd_cells"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-min-side", type=int, nargs="*", default=[], help="also time cvkit with these")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.root.resolve()
    rows = []
    for size in args.sizes:
        loaders: dict[str, Loader] = {
            "albumentations (cv2)": partial(albumentations_loader, root, size, args.batch_size, args.workers),
            "cvkit": partial(cvkit_loader, root, size, args.batch_size, args.workers),
            "torchvision v2 (PIL)": partial(torchvision_loader, root, size, args.batch_size, args.workers),
        }
        for side in args.decode_min_side:
            loaders[f"cvkit, decode_min_side={side}"] = partial(
                cvkit_loader, root, size, args.batch_size, args.workers, side
            )
        runs: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.repeats):
            for name, make in loaders.items():
                runs[name].append(images_per_second(make, args.epochs))
        reference = statistics.median(runs["albumentations (cv2)"])
        for name, figures in runs.items():
            median = statistics.median(figures)
            rows.append({"size": size, "loader": name, "runs": figures, "median": median, "ratio": median / reference})
    headers = ["size", "loader", "images/s (median)", "runs", "ratio to albumentations"]
    print_table(
        f"Train loader, {root.name}, batch {args.batch_size}, {args.workers} workers, {args.epochs} epochs per run",
        headers,
        [
            [
                r["size"],
                r["loader"],
                f"{r['median']:,.0f}",
                " / ".join(f"{v:,.0f}" for v in r["runs"]),
                f"{r['ratio']:.2f}",
            ]
            for r in rows
        ],
    )
    write_results(args.json, {"settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
