"""Smoke runs of the end-to-end benchmark scripts (scripts/benchmarks/): they run, and their JSON holds every
row, with the date, commit, machine and versions. Speed is what the scripts measure, not what the tests check."""

import importlib.util
import json
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.datasets import make_folder
from tests.helpers.paths import REPO

BENCHMARKS = REPO / "scripts" / "benchmarks"


def run(script: str, *args: str) -> None:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_the_loader_benchmark_times_every_loader(bccd_cells: Path, tmp_path: Path) -> None:
    root = make_folder(bccd_cells, tmp_path / "folder")
    settings = ["--sizes", "32", "--batch-size", "4", "--workers", "0", "--epochs", "1", "--repeats", "1"]
    run("loaders.py", "--root", str(root), *settings, "--decode-min-side", "16", "--json", str(tmp_path / "l.json"))
    rows = json.loads((tmp_path / "l.json").read_text())["rows"]
    names = ["albumentations (cv2)", "cvkit", "torchvision v2 (PIL)", "cvkit, decode_min_side=16"]
    assert [row["loader"] for row in rows] == names
    assert all(row["median"] > 0 for row in rows)


def test_the_whole_command_comparison_runs_both_sides(data_root: Path, bccd_cells: Path, tmp_path: Path) -> None:
    settings = ["--workloads", "classification", "--smoke", "--repeats", "1", "--keep", str(tmp_path / "runs")]
    run("compare.py", "--data", str(data_root), *settings, "--json", str(tmp_path / "c.json"))
    (result,) = json.loads((tmp_path / "c.json").read_text())["results"]
    assert set(result["median"]) == {"cvkit", "plain"}
    assert all(
        result["median"][side]["wall_s"] > 0 and result["median"][side]["cpu_s"] > 0 for side in result["median"]
    )
    assert result["paired_ratio"] == pytest.approx(result["ratio"])  # one run each: the one pair's ratio
    assert (tmp_path / "runs" / "classification-0" / "plain" / "last.pt").is_file()
    assert (tmp_path / "runs" / "classification-0" / "cvkit" / "checkpoints" / "last.ckpt").is_file()


def test_the_decode_benchmark_times_every_reader(bccd_voc: Path, tmp_path: Path) -> None:
    folder = bccd_voc / "JPEGImages"
    run("decode.py", "--folders", str(folder), "--limit", "3", "--repeats", "1", "--json", str(tmp_path / "d.json"))
    rows = json.loads((tmp_path / "d.json").read_text())["rows"]
    assert [row["reader"] for row in rows][:2] == ["PIL convert('RGB')", "cvkit, full size"]
    assert {row["reader"]: row["decoded_shape"] for row in rows}["cvkit, decode_min_side=224"] == [240, 320, 3]


def test_the_layout_benchmark_times_both_layouts(tmp_path: Path) -> None:
    settings = ["--workloads", "resnet18", "--steps", "1", "--repeats", "1", "--json", str(tmp_path / "layout.json")]
    run("layout.py", *settings)
    report = json.loads((tmp_path / "layout.json").read_text())
    assert {"date", "commit", "machine", "versions"} <= set(report) and report["machine"]["threads"] >= 1
    rows = report["rows"]
    assert [row["figure"] for row in rows] == ["train step", "eval forward"]
    assert all(row["default_ms"] > 0 and row["channels_last_ms"] > 0 for row in rows)


def benchmarks_common() -> ModuleType:
    """scripts/benchmarks/common.py as a module, under a name of its own (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_record_date_commit_machine_and_versions() -> None:
    report = benchmarks_common().stamped({"machine": {"threads": 3}, "versions": {"torch_cuda": "13.0"}, "rows": []})
    assert list(report) == ["date", "commit", "machine", "versions", "rows"]
    assert report["commit"] == "unknown" or len(report["commit"].removesuffix("+changes")) == 40
    assert report["machine"]["threads"] == 3 and report["machine"]["cpu_count"] >= 1 and "gpus" in report["machine"]
    assert report["versions"]["python"] == platform.python_version()
    assert report["versions"]["torch"] == version("torch") and report["versions"]["torch_cuda"] == "13.0"


def test_every_script_writing_results_records_them() -> None:
    """Every script under scripts/ with a --json option writes it through common.py's write_results or stamped."""
    writers = [path for path in (REPO / "scripts").rglob("*.py") if '"--json"' in path.read_text()]
    assert len(writers) >= 7, writers
    unstamped = [str(p) for p in writers if "write_results(" not in p.read_text() and "stamped(" not in p.read_text()]
    assert unstamped == []


def test_the_streaming_benchmark_times_every_source_cold_and_warm(bccd_cells: Path, tmp_path: Path) -> None:
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    root = make_folder(bccd_cells, tmp_path / "folder", per_class=8)
    settings = ["--size", "32", "--batch-size", "4", "--epochs", "1", "--workers", "0", "--repeats", "1"]
    run("streaming.py", "--root", str(root), *settings, "--processes", "1", "--json", str(tmp_path / "s.json"))
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    sources = [(row["source"], row["processes"], row["cache"]) for row in rows]
    assert sources == [(source, 1, cache) for source in ("files", "shards", "s3") for cache in ("cold", "warm")]
    assert all(row["first_batch_s"] > 0 and row["images_per_s"] > 0 for row in rows)
    assert [row["vs_folder"] for row in rows[:2]] == [1, 1] and all(row["vs_folder"] > 0 for row in rows)


def test_the_shard_reads_benchmark_times_each_reader_for_each_chunk_size(bccd_cells: Path, tmp_path: Path) -> None:
    root = make_folder(bccd_cells, tmp_path / "folder", per_class=8)
    settings = ["--chunk-bytes", "64MB", "8KB", "--repeats", "1", "--json", str(tmp_path / "r.json")]
    run("shard_reads.py", "--root", str(root), *settings)
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [row["chunk_bytes"] for row in rows] == ["64MB"] * 3 + ["8KB"] * 3
    assert len({row["source"] for row in rows}) == 3 and all(row["us"] > 0 for row in rows)
    assert rows[0]["chunks"] < rows[3]["chunks"]
