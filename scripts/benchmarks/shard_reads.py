"""Microseconds to read one training sample's stored bytes, in one shuffled order over all samples (the order a
run reads them in), in one process with a warm page cache: from an image folder's files, from its shards by
cvkit's reader (one read at an offset of the chunk file), and from the same shards by LitData's own
``StreamingDataset``. The shards are written twice: with the default chunk size (a small set fills a few
chunks) and with small chunks (many chunks, as a large dataset has). Each row is the median of ``--repeats``
passes; the sources take turns within each repeat.

    python scripts/benchmarks/shard_reads.py --root ../shared/data/bccd_cells --json docs/benchmarks_shard_reads.json
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cvkit_config, print_table, write_results, write_shards


def training_files(root: Path) -> list[Path]:
    """The training images of the image folder at `root`, as cvkit's data module lists them."""
    from cvkit.builders import build_datamodule

    datamodule = build_datamodule(cvkit_config("data=imagefolder", f"data.root={root}"))
    datamodule.setup("fit")
    images = datamodule.splits["train"].images
    while not hasattr(images, "paths"):  # a subset of the listed files
        images = images.source
    return [Path(path) for path in images.paths]


def microseconds_per_read(read: Callable[[int], bytes], order: list[int]) -> float:
    for index in order[:200]:  # open what stays open, fill the page cache
        read(index)
    started = time.perf_counter()
    for index in order:
        read(index)
    return (time.perf_counter() - started) / len(order) * 1e6


def measure(split: Path, files: list[Path], order: list[int], repeats: int) -> dict[str, list[float]]:
    """Microseconds a read, of each source, in each of `repeats` passes over `order`."""
    from litdata import StreamingDataset

    from cvkit.data.streaming.shards import ShardReader

    reader, litdata = ShardReader(str(split)), StreamingDataset(str(split), batch_decode=False)
    sources: dict[str, Callable[[int], bytes]] = {
        "image files": lambda index: files[index].read_bytes(),
        "shards, cvkit's reader": lambda index: bytes(reader.sample(index)["image"]),
        "shards, LitData's StreamingDataset": lambda index: bytes(litdata[index]["image"]),
    }
    runs: dict[str, list[float]] = {source: [] for source in sources}
    for _ in range(repeats):
        for source, read in sources.items():
            runs[source].append(microseconds_per_read(read, order))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="an image folder (train/<class>/*, val/<class>/*)")
    parser.add_argument("--chunk-bytes", nargs="+", default=["64MB", "256KB"], help="chunk sizes to write shards with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    files = training_files(arguments.root)
    order = list(range(len(files)))
    random.Random(0).shuffle(order)
    scratch = Path(tempfile.mkdtemp(prefix="cvkit-shard-reads-"))
    rows: list[dict[str, Any]] = []
    try:
        for chunk_bytes in arguments.chunk_bytes:
            split = write_shards(arguments.root, scratch / chunk_bytes, "--chunk-bytes", chunk_bytes) / "train"
            for source, measured in measure(split, files, order, arguments.repeats).items():
                row = {"chunk_bytes": chunk_bytes, "chunks": len(list(split.glob("*.bin"))), "source": source}
                rows.append({**row, "us": statistics.median(measured), "runs": measured})
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = [[row["source"], row["chunk_bytes"], row["chunks"], f"{row['us']:.1f}"] for row in rows]
    title = f"One training sample's bytes, in a shuffled order over {len(files)} samples"
    print_table(title, ["read from", "chunk bytes", "chunks", "us a sample (median)"], table)
    write_results(arguments.json, {"root": str(arguments.root), "repeats": arguments.repeats, "rows": rows})


if __name__ == "__main__":
    main()
