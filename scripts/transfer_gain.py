"""What a pretrained backbone gains on a small labelled set, measured through cvkit-train as a user runs it.

A backbone pretrained with cvkit on one data set (``--weights``: a cvkit checkpoint, e.g. of
``experiment=fashion_mnist``) is fine-tuned on a few images per class of another, five ways with everything else
equal (same epochs, optimizer, schedule, data, seeds): from scratch, full fine-tune, frozen backbone (a linear
probe), frozen then unfrozen, and layer-wise LR decay. Each arm runs once per seed (``--seeds``; the seed also
draws the images of each class, the same for every arm); the best checkpoint by val accuracy is scored on the
test split. Prints a table of mean +- std and writes ``--json`` (with the date, commit, machine and versions).
See docs/results.md, "Transfer learning".

    python scripts/transfer_gain.py --weights outputs/fmnist_pretrain/checkpoints/last.ckpt \\
        --out outputs/transfer_gain --json docs/transfer_gain.json
    python scripts/transfer_gain.py --plot docs/transfer_gain.png \\
        --results docs/transfer_gain.json docs/transfer_gain_3_per_class.json
Extra arguments are Hydra overrides for every run (they replace the defaults of :data:`TARGET`). ``--plot`` draws
the test accuracy of each arm (mean and each seed) of one or more results files, without training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
from common import print_table, write_results

sys.path.pop(0)

# The small labelled set: scikit-learn's digits at the pretraining's 28 px and normalisation (Fashion-MNIST's),
# 10 training images of each class, 360 val and 360 test images; AdamW, a warmup epoch, cosine, 30 epochs.
TARGET = [
    "data=digits",
    "data.image_size=28",
    "data.train_per_class=10",
    "data.test_fraction=0.2",
    "data.mean=[0.286,0.286,0.286]",
    "data.std=[0.353,0.353,0.353]",
    "data.batch_size=32",
    "data.num_workers=0",
    "backbone=resnet",
    "backbone.name=resnet18",
    "optimizer=adamw",
    "optimizer.lr=1e-3",
    "optimizer.base_batch_size=32",
    "scheduler.warmup_epochs=1",
    "trainer.max_epochs=30",
    "logger=csv",
]
ARMS = {
    "from scratch": [],
    "full fine-tune": ["backbone.weights={weights}"],
    "frozen backbone": ["backbone.weights={weights}", "backbone.freeze=true"],
    "frozen 10 epochs, then unfrozen": ["backbone.weights={weights}", "backbone.freeze_epochs=10"],
    "layer-wise decay 0.7": ["backbone.weights={weights}", "optimizer.layer_decay=0.7"],
}


def run_arm(arm: str, seed: int, weights: Path, out: Path, extra: list[str]) -> dict[str, float]:
    """Train `arm` with `seed` through the cvkit-train console script; its test and best val accuracy and run time."""
    run_dir = out / arm.replace(" ", "_").replace(",", "") / f"seed{seed}"
    overrides = [*TARGET, *(o.format(weights=weights) for o in ARMS[arm]), *extra, f"seed={seed}"]
    command = [str(Path(sys.executable).parent / "cvkit-train"), *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode:
        sys.exit(
            f"{arm}, seed {seed} failed ({finished.returncode}):\n{finished.stdout[-3000:]}{finished.stderr[-3000:]}"
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return {"test_acc": metrics["test/acc"], "val_acc_best": metrics["val/acc_best"], "seconds": seconds}


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def plot(results: list[Path], out: Path) -> None:
    """Each arm's test accuracy in each results file: a bar for the mean, a dot for each seed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loaded = [json.loads(path.read_text()) for path in results]
    arms = [arm for arm in ARMS if arm in loaded[0]["runs"]]  # (the JSON's keys are sorted)
    figure = Figure(figsize=(8, 3.6), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / len(loaded)
    for index, content in enumerate(loaded):
        per_class = next((o.split("=")[1] for o in content["extra"] if o.startswith("data.train_per_class=")), None)
        per_class = per_class or next(o.split("=")[1] for o in content["target"] if "train_per_class=" in o)
        positions = [arm + (index - (len(loaded) - 1) / 2) * width for arm in range(len(arms))]
        means = [statistics.mean(r["test_acc"] for r in content["runs"][arm]) for arm in arms]
        axes.bar(positions, means, width * 0.9, label=f"{per_class} images a class")
        for position, arm in zip(positions, arms, strict=True):
            seeds = [r["test_acc"] for r in content["runs"][arm]]
            axes.plot([position] * len(seeds), seeds, "k.", markersize=4)
    axes.set_xticks(range(len(arms)), [arm.replace(", then", ",\nthen") for arm in arms], fontsize=8)
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0, 1)
    axes.set_title("digits from a Fashion-MNIST ResNet-18 (bars: mean of 3 seeds, dots: each seed)", fontsize=9)
    axes.legend(fontsize=8, loc="upper center")
    FigureCanvasAgg(figure).print_png(str(out))
    print(f"written: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="the pretrained backbone (a cvkit checkpoint)")
    parser.add_argument("--out", type=Path, default=Path("outputs/transfer_gain"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="draw --results into this PNG instead of training")
    parser.add_argument("--results", type=Path, nargs="+", default=[])
    args, extra = parser.parse_known_args()
    if args.plot:
        plot(args.results, args.plot)
        return
    if args.weights is None:
        parser.error("--weights is required to train")
    runs: dict[str, list[dict[str, float]]] = {}
    for arm in ARMS:
        for seed in args.seeds:
            result = run_arm(arm, seed, args.weights.resolve(), args.out, extra)
            runs.setdefault(arm, []).append({"seed": seed, **result})
            print(f"{arm}, seed {seed}: test acc {result['test_acc']:.4f} ({result['seconds']:.0f} s)", flush=True)
    rows = [
        [arm, mean_std([r["test_acc"] for r in done]), mean_std([r["val_acc_best"] for r in done]),
         f"{statistics.mean(r['seconds'] for r in done):.0f}"]
        for arm, done in runs.items()
    ]  # fmt: skip
    print_table(
        f"digits, {len(args.seeds)} seeds: test accuracy of the best val checkpoint",
        ["arm", "test acc (mean ± std)", "best val acc", "s per run"],
        rows,
    )
    write_results(
        args.json, {"weights": str(args.weights), "target": TARGET, "extra": extra, "arms": ARMS, "runs": runs}
    )


if __name__ == "__main__":
    main()
