#!/usr/bin/env bash
# GPU training benchmark: ResNet-50 (timm, random weights) at 224 px, bf16 autocast, channels-last, SGD with momentum,
# batch 256, trained by cvkit-train, a hand-written PyTorch loop and a timm train.py-style loop, on synthetic batches
# made on the GPU and on real JPEGs, with torch.compile off and on (on: all but cvkit on JPEGs); plus loader-only
# images/s with 16 workers.
# What each row measures: gpu_throughput.py's docstring and docs/benchmarks.md.
#
# Usage, from anywhere, with the Python env that has the project installed (pip install -e .) active or named in
# $PYTHON (default python3):
#   bash scripts/benchmarks/gpu.sh [--dry-run] [--jpeg-dir DIR] [--json PATH]
#     --dry-run       tiny sizes on the CPU (under a minute): every path of the real run; its numbers are no figures
#     --jpeg-dir DIR  any folder of JPEGs, searched recursively; only read (a temp dir holds symlinks to its files).
#                     Default: $CVKIT_DATA/coco128, CVKIT_DATA defaulting to ../shared/data beside the repository
#     --json PATH     the results (default: outputs/benchmarks/gpu-<time>.json in the repository), rewritten after
#                     every row, so that a run stopped early keeps what it measured
# Without --dry-run it needs a CUDA GPU and stops at once without one. No network: nothing is downloaded. Planned at
# about 6 minutes on one H100/H200 (an estimate: never run on a GPU yet); a row that could end after 450 s is skipped
# (named in the table), and the whole run is stopped at 8 minutes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
limit_s=480
for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then
        limit_s=270
    fi
done

start=$SECONDS
status=0
timeout --kill-after=10 "$limit_s" "$python" "$here/gpu_throughput.py" "$@" || status=$?
if [[ $status -eq 124 ]]; then
    echo "gpu.sh: stopped at the ${limit_s} s limit; the JSON holds the rows measured until then" >&2
fi
echo "gpu.sh: $((SECONDS - start)) s in all, exit status $status"
exit "$status"
