"""JPEG decode time per image: PIL as most loaders use it, cvkit's reader at full size, and cvkit's reduced-size
decode (``data.decode_min_side``: 1/2, 1/4 or 1/8 scale in the DCT while the shorter side stays at least that
many pixels). Each reader decodes every file of each folder, ``--repeats`` times in alternation (files warm in
the page cache after the first pass, which is not timed); the table gives the median ms per image and the
speed-up over PIL.

    python scripts/benchmarks/decode.py --folders ../shared/data/BCCD/JPEGImages ../shared/data/coco128/images \\
        --min-sides 224 112 64 --json decode.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results

from cvkit.data.images import read_rgb


def pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def ms_per_image(read: Callable[[Path], np.ndarray], paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        read(path)
    return 1e3 * (time.perf_counter() - start) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", type=Path, nargs="+", required=True, help="searched for *.jpg recursively")
    parser.add_argument("--min-sides", type=int, nargs="*", default=[224, 112, 64])
    parser.add_argument("--limit", type=int, default=200, help="files per folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    readers: dict[str, Callable[[Path], np.ndarray]] = {"PIL convert('RGB')": pil_rgb, "cvkit, full size": read_rgb}
    readers |= {f"cvkit, decode_min_side={side}": partial(read_rgb, min_side=side) for side in args.min_sides}
    rows = []
    for folder in args.folders:
        paths = sorted(folder.rglob("*.jpg"))[: args.limit]
        sizes = [Image.open(path).size for path in paths]
        for read in readers.values():
            ms_per_image(read, paths)  # the page cache, and first-call costs
        runs: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.repeats):
            for name, read in readers.items():
                runs[name].append(ms_per_image(read, paths))
        reference = statistics.median(runs["PIL convert('RGB')"])
        for name, read in readers.items():
            median = statistics.median(runs[name])
            shape = read(paths[0]).shape
            rows.append({"folder": str(folder), "files": len(paths), "first_size": sizes[0], "reader": name,
                         "decoded_shape": list(shape), "runs_ms": runs[name], "median_ms": median,
                         "speedup": reference / median})  # fmt: skip
    print_table(
        "JPEG decode, ms per image (median)",
        ["folder", "reader", "first image decoded to", "ms", "speed-up over PIL"],
        [[Path(r["folder"]).name + f" ({r['files']} files, {r['first_size'][0]}x{r['first_size'][1]})", r["reader"],
          "x".join(map(str, r["decoded_shape"][:2])), f"{r['median_ms']:.2f}", f"{r['speedup']:.2f}"] for r in rows],
    )  # fmt: skip
    write_results(args.json, {"settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
