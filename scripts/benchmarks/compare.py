"""cvkit against a hand-written script doing the same work, as a user meets them: whole commands, start-up,
decoding, validation and checkpoints included.

For each workload, runs the ``cvkit-train`` command and the hand-written baseline (``baselines/*.py``)
alternately (cvkit, plain, plain, cvkit, ...: each gets the early and the late slots equally), ``--repeats``
times each, and records the wall seconds, the CPU seconds (user + system, the loader workers included) of
every process, and the peak resident memory of the largest process (MB). Prints the medians, the ratio of
the medians cvkit / plain and the median of the ratios of the runs made next to each other (run i of each
side), and writes everything as JSON.

    python scripts/benchmarks/compare.py --data ../shared/data --repeats 3 --json docs/benchmarks_e2e.json
    python scripts/benchmarks/compare.py --workloads classification --smoke    # a few batches, to check it runs
    python scripts/benchmarks/compare.py --workloads classification --cvkit-overrides channels_last=true
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results

BASELINES = Path(__file__).resolve().parent / "baselines"
SMOKE_CVKIT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
SMOKE_PLAIN = ["--epochs", "1", "--limit-batches", "2"]
COCO128_ANNOTATIONS = "{data}/coco128/annotations/instances_train2017.json"  # train and val: coco128 has one split


@dataclass(frozen=True)
class Workload:
    """A cvkit-train command and the baseline script doing the same work; ``{data}`` is the data root."""

    cvkit: list[str]
    baseline: str
    baseline_args: list[str]


WORKLOADS = {
    "classification": Workload(
        cvkit=["experiment=bccd_cells", "data.root={data}/bccd_cells", "trainer.max_epochs=2", "test_after_fit=false"],
        baseline="classification.py",
        baseline_args=["--data", "{data}/bccd_cells", "--epochs", "2"],
    ),
    "detection": Workload(
        cvkit=[
            "experiment=bccd_detection",
            "data.root={data}/BCCD",
            "trainer.max_epochs=1",
            "test_after_fit=false",
            "task.log_images=0",
            "trainer.limit_train_batches=20",
            "trainer.limit_val_batches=20",
        ],
        baseline="detection.py",
        baseline_args=["--data", "{data}/BCCD", "--epochs", "1", "--limit-batches", "20"],
    ),
    "segmentation": Workload(
        cvkit=[
            "task=segmentation",
            "data=camvid",
            "data.root={data}/CamVid",
            "backbone=resnet",
            "backbone.name=resnet18",
            "task.model.decoder=unet",
            "data.image_size=[96,128]",
            "data.batch_size=8",
            "trainer.max_epochs=1",
            "test_after_fit=false",
            "task.log_images=0",
        ],
        baseline="segmentation.py",
        baseline_args=["--data", "{data}/CamVid", "--epochs", "1"],
    ),
    "instance_segmentation": Workload(
        cvkit=[
            "task=instance_segmentation",
            "data=coco_instances",
            *(f"data.{split}_images={{data}}/coco128/images/train2017" for split in ("train", "val")),
            *(f"data.{split}_annotations={COCO128_ANNOTATIONS}" for split in ("train", "val")),
            "backbone=resnet",
            "backbone.name=resnet18",
            "task.model.min_size=256",
            "task.model.max_size=352",
            "trainer.max_epochs=1",
            "test_after_fit=false",
            "task.log_images=0",
            "trainer.limit_train_batches=20",
            "trainer.limit_val_batches=20",
        ],
        baseline="instance_segmentation.py",
        baseline_args=[
            *("--images", "{data}/coco128/images/train2017", "--annotations", COCO128_ANNOTATIONS),
            *("--epochs", "1", "--limit-batches", "20"),
        ],
    ),
    "detr": Workload(
        cvkit=[
            "experiment=bccd_detr",
            "data.root={data}/BCCD",
            "trainer.max_epochs=1",
            "test_after_fit=false",
            "task.log_images=0",
            "trainer.limit_train_batches=20",
            "trainer.limit_val_batches=20",
        ],
        baseline="detr.py",
        baseline_args=["--data", "{data}/BCCD", "--epochs", "1", "--limit-batches", "20"],
    ),
}


def commands(workload: Workload, data: Path, out: Path, smoke: bool) -> dict[str, list[str]]:
    """The cvkit and the plain command of `workload`, writing under `out`."""
    cvkit = [str(Path(sys.executable).parent / "cvkit-train"), *(a.format(data=data) for a in workload.cvkit)]
    cvkit += [f"hydra.run.dir={out / 'cvkit'}", *(SMOKE_CVKIT if smoke else [])]
    plain = [sys.executable, str(BASELINES / workload.baseline), *(a.format(data=data) for a in workload.baseline_args)]
    plain += ["--out", str(out / "plain"), *(SMOKE_PLAIN if smoke else [])]
    return {"cvkit": cvkit, "plain": plain}


# Runs a command and prints the peak resident memory of its largest process (ru_maxrss of the children it
# waited for: the command's own process, or a worker if one grew larger), in a process of its own, so that
# each command's peak is its own.
PEAK_MEMORY = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)
FIGURES = (("wall_s", "wall s"), ("cpu_s", "CPU s"), ("peak_mb", "peak MB"))


def timed(command: list[str], log: Path) -> dict[str, float]:
    """Run `command` (its output to `log`); its wall seconds, the CPU seconds of it and its children, and the
    peak resident memory of its largest process in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as output:
        result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, *command], stdout=output, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}); its output: {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_kb = int(log.read_text().rsplit("peak_rss_kb", 1)[1].split()[0])
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak_kb / 1024}


def run_workload(name: str, workload: Workload, data: Path, repeats: int, smoke: bool, keep: Path) -> dict:
    """`repeats` runs of each side, in the order cvkit, plain, plain, cvkit, cvkit, plain, ..."""
    runs: dict[str, list[dict[str, float]]] = {"cvkit": [], "plain": []}
    for repeat in range(repeats):
        order = ("cvkit", "plain") if repeat % 2 == 0 else ("plain", "cvkit")
        for side in order:
            out = keep / f"{name}-{repeat}"
            command = commands(workload, data, out, smoke)[side]
            out.mkdir(parents=True, exist_ok=True)
            runs[side].append(timed(command, out / f"{side}.log"))
            print(f"{name} {side} run {repeat + 1}: {runs[side][-1]['wall_s']:.1f} s wall", flush=True)
    keys = [key for key, _ in FIGURES]
    medians = {side: {k: statistics.median(r[k] for r in runs[side]) for k in keys} for side in runs}
    ratios = {k: medians["cvkit"][k] / medians["plain"][k] for k in keys}
    # Run i of each side ran next to each other: their ratios are less exposed to the machine's drift.
    pairs = list(zip(runs["cvkit"], runs["plain"]))
    paired = {k: statistics.median(c[k] / p[k] for c, p in pairs) for k in keys}
    return {"workload": name, "commands": commands(workload, data, keep / name, smoke), "runs": runs,
            "median": medians, "ratio": ratios, "paired_ratio": paired}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="the folder holding the datasets")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few batches per run: checks the commands run")
    parser.add_argument("--cvkit-overrides", nargs="*", default=[], help="added to each cvkit command")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs' folders and logs here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = args.data.resolve()
    with tempfile.TemporaryDirectory(prefix="cvkit-bench-") as scratch:
        keep = args.keep.resolve() if args.keep else Path(scratch)
        workloads = {name: WORKLOADS[name] for name in args.workloads}
        workloads = {name: replace(w, cvkit=[*w.cvkit, *args.cvkit_overrides]) for name, w in workloads.items()}
        results = [run_workload(n, w, data, args.repeats, args.smoke, keep) for n, w in workloads.items()]
    rows = []
    for result in results:
        for key, label in FIGURES:
            runs = {side: " / ".join(f"{r[key]:.1f}" for r in result["runs"][side]) for side in ("cvkit", "plain")}
            median = result["median"]
            rows.append([result["workload"], label, f"{median['cvkit'][key]:.1f}", f"{median['plain'][key]:.1f}",
                         f"{result['ratio'][key]:.3f}", f"{result['paired_ratio'][key]:.3f}", runs["cvkit"],
                         runs["plain"]])  # fmt: skip
    headers = ["workload", "figure", "cvkit (median)", "plain (median)", "ratio", "paired ratio", "cvkit runs",
               "plain runs"]  # fmt: skip
    print_table(
        f"Whole commands, {args.repeats} alternating runs each{' (smoke)' if args.smoke else ''}", headers, rows
    )
    write_results(args.json, {"settings": vars(args), "results": results})


if __name__ == "__main__":
    main()
