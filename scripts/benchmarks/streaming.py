"""Time to first batch and images/s per rank: an image folder against its shards (``data=streaming``), the shards on
local disk and in object storage (a local S3 server, moto), 1 and 2 processes, cold and warm cache.

Each rank is a fresh Python process, as each rank of a job is: it composes cvkit's config as ``cvkit-train`` does
(``data=imagefolder`` or ``data=streaming``), builds the data module and its train loader for its rank of the world
(seeded sampler, its share of the samples, ``--workers`` persistent loader workers) and reads ``--epochs`` whole
epochs. Time to first batch counts from the process's start (interpreter, imports, listing the folder or reading
the manifest, worker start-up) to its first batch; images/s is over the batches after the first, summed over the
ranks; "÷ folder" is the median over the repeats of a run's images/s over the image folder's in the same
repeat.

Each row is the median of ``--repeats`` runs. Cold: every file's pages dropped from the OS page cache first
(``posix_fadvise(DONTNEED)``, no root needed), and for object storage an empty cache folder (every chunk fetched).
Warm: the same run again at once. The sources take turns within each repeat.

    python scripts/benchmarks/streaming.py --root ../shared/data/bccd_cells --json docs/benchmarks_streaming.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cvkit_config, print_table, write_results, write_shards

SOURCES = {"files": "image folder", "shards": "shards, local disk", "s3": "shards, S3 (local server)"}


def rank_loader(overrides: list[str], rank: int, world_size: int) -> Any:
    """The train loader `rank` of `world_size` gets, built from the composed config as cvkit-train builds it."""
    import torch

    from cvkit.builders import build_datamodule

    datamodule = build_datamodule(cvkit_config(*overrides))
    cpu = SimpleNamespace(root_device=torch.device("cpu"))
    datamodule.trainer = SimpleNamespace(global_rank=rank, world_size=world_size, num_devices=1, strategy=cpu)
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def measure_rank(arguments: argparse.Namespace) -> None:
    """One rank's run (in its own process): print when its first batch came, and its images/s after it."""
    loader = rank_loader(json.loads(arguments.overrides), arguments.rank, arguments.world_size)
    first_at, images = None, 0
    for epoch in range(arguments.epochs):
        loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch's start
        for batch in loader:
            if first_at is None:
                first_at = time.time()
            else:
                images += len(batch[0])
    print(json.dumps({"first_at": first_at, "images": images, "seconds": time.time() - first_at}))


def drop_page_cache(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as file:
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def run_ranks(overrides: list[str], world_size: int, epochs: int) -> dict[str, float]:
    """Start `world_size` rank processes together; their slowest time to first batch and summed images/s."""
    started = time.time()
    command = [sys.executable, __file__, "rank", "--overrides", json.dumps(overrides), "--epochs", str(epochs)]
    processes = [
        subprocess.Popen(
            [*command, "--rank", str(rank), "--world-size", str(world_size)], stdout=subprocess.PIPE, text=True
        )
        for rank in range(world_size)
    ]
    results = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a rank failed (exit {process.returncode}): {overrides}")
        results.append(json.loads(output.strip().splitlines()[-1]))
    return {
        "first_batch_s": max(result["first_at"] for result in results) - started,
        "images_per_s": sum(result["images"] / result["seconds"] for result in results),
    }


def start_s3(shards: Path) -> tuple[Any, dict[str, str]]:
    """A local S3 server (moto) holding `shards` under s3://bench/shards, and the client settings for it."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
    client = boto3.client("s3", region_name="us-east-1", **options)
    client.create_bucket(Bucket="bench")
    for path in shards.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "bench", f"shards/{path.relative_to(shards)}")
    return server, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    rank = commands.add_parser("rank", help="(internal) one rank's measurement")
    rank.add_argument("--overrides", required=True)
    rank.add_argument("--rank", type=int, required=True)
    rank.add_argument("--world-size", type=int, required=True)
    rank.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--root", type=Path, help="an image folder (train/<class>/*, val/<class>/*)")
    parser.add_argument("--shards", type=Path, help="its shards (default: written into a temporary folder)")
    parser.add_argument("--size", type=int, default=64, help="image size (default 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5, help="epochs each rank reads whole (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers of each rank (default 2)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="cold-then-warm pairs of each row (default 3: medians)")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    if arguments.command == "rank":
        measure_rank(arguments)
        return
    if arguments.root is None:
        parser.error("--root is required")
    scratch = Path(tempfile.mkdtemp(prefix="cvkit-streaming-bench-"))
    try:
        rows = benchmark(arguments, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = [
        [
            SOURCES[row["source"]],
            row["processes"],
            row["cache"],
            f"{row['first_batch_s']:.2f}",
            f"{row['images_per_s']:,.0f}",
            f"{row['vs_folder']:.2f}",
        ]
        for row in rows
    ]
    headers = ["data", "processes", "cache", "first batch (s)", "images/s", "÷ folder (paired)"]
    print_table("Train loader from an image folder and from its shards", headers, table)
    settings = {key: getattr(arguments, key) for key in ("size", "batch_size", "epochs", "workers", "repeats")}
    write_results(arguments.json, {"root": str(arguments.root), "settings": settings, "rows": rows})


def benchmark(arguments: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    shards = arguments.shards
    if shards is None:
        shards = write_shards(arguments.root, scratch / "shards")
    server, options = start_s3(shards)
    settings = ", ".join(f"{key}: '{value}'" for key, value in options.items())
    common = [
        f"data.image_size={arguments.size}",
        f"data.batch_size={arguments.batch_size}",
        f"data.num_workers={arguments.workers}",
    ]
    cache = scratch / "cache"
    sources = {
        "files": (["data=imagefolder", f"data.root={arguments.root}"], arguments.root),
        "shards": (["data=streaming", f"data.root={shards}"], shards),
        "s3": (
            [
                "data=streaming",
                "data.root=s3://bench/shards",
                f"data.storage_options={{{settings}}}",
                f"data.cache_dir={cache}",
            ],
            cache,
        ),
    }
    rows = []
    try:
        for processes in arguments.processes:
            # the sources take turns within each repeat, so that a slower spell of the machine falls on all alike
            runs = {source: {"cold": [], "warm": []} for source in sources}
            for _ in range(arguments.repeats):
                for source, (data, folder) in sources.items():
                    shutil.rmtree(cache, ignore_errors=True)
                    if folder.exists():
                        drop_page_cache(folder)
                    for measured in runs[source].values():  # cold, then warm
                        measured.append(run_ranks([*data, *common], processes, arguments.epochs))
            for source, states in runs.items():
                for state, measured in states.items():
                    median = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
                    # each run against the folder's of the same repeat, taken just before it: drift cancels
                    paired = zip(measured, runs["files"][state], strict=True)
                    ratios = [run["images_per_s"] / files["images_per_s"] for run, files in paired]
                    median["vs_folder"] = statistics.median(ratios)
                    rows.append({"source": source, "processes": processes, "cache": state, **median, "runs": measured})
                    print({key: value for key, value in rows[-1].items() if key != "runs"}, flush=True)
    finally:
        server.stop()
    return rows


if __name__ == "__main__":
    main()
