"""The GPU benchmark's dry run, its smoke test: ``scripts/benchmarks/gpu.sh --dry-run`` measures every row of the
real run (tiny sizes, on the CPU) and writes them all to its JSON with a positive images/s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

TRAINING = [("plain", "synthetic"), ("cvkit", "synthetic"), ("plain", "jpeg"), ("timm", "jpeg"), ("cvkit", "jpeg")]
ROWS = {
    *(("loader", trainer, "jpeg", False) for trainer in ("cvkit", "plain", "timm")),
    *(("train", trainer, data, False) for trainer, data in TRAINING),
    *(("train", trainer, data, True) for trainer, data in TRAINING if (trainer, data) != ("cvkit", "jpeg")),
}


def test_dry_run_measures_every_row(tmp_path: Path, coco128: Path) -> None:
    results = tmp_path / "gpu.json"
    script = REPO / "scripts" / "benchmarks" / "gpu.sh"
    command = ["bash", str(script), "--dry-run", "--jpeg-dir", str(coco128), "--json", str(results)]
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(results.read_text())
    assert report["dry_run"] and report["jpeg"]["jpeg_dir"] == str(coco128)
    rows = report["rows"]
    assert {(row["section"], row["trainer"], row["data"], row["compile"]) for row in rows} == ROWS
    assert [row for row in rows if not (row["images_per_s"] or 0) > 0] == []
    assert "| train | cvkit | synthetic | on |" in run.stdout
