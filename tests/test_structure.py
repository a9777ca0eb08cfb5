"""The package structure, as scripts/structure.py measures it from the source: no import cycles, the layer rules
hold, task-kind branches only in the task table, and ``cvkit.load`` imports none of the training code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "structure.py"

# The modules allowed to branch on the task kind: the task table.
ALLOW: tuple[str, ...] = ("cvkit.task_kinds",)
# Comparisons of task kinds elsewhere that choose no behaviour: refusing another task's checkpoint.
CHECKS = [("cvkit.checkpoints", "if self.task != kind:")]


def run_structure(json_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the script (its own interpreter, as from a shell) and read the JSON it wrote."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", str(json_path), *args], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode in (0, 1), f"structure.py crashed (exit {proc.returncode}):\n{proc.stderr}"
    return proc, json.loads(json_path.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    allow = [arg for module in ALLOW for arg in ("--allow", module)]
    _, data = run_structure(tmp_path_factory.mktemp("structure") / "structure.json", *allow)
    return data


def lines(entries: list[dict], fmt: str) -> str:
    return "\n".join(fmt.format(**e) for e in entries)


def test_no_import_cycles(report: dict) -> None:
    cycles = report["cycles"]
    assert cycles["components"] == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles["cycles"])


def test_layer_rules_hold(report: dict) -> None:
    violations = report["layer_violations"]
    assert violations == [], "layer violations:\n" + lines(violations, "{importer} -> {imported} ({line}, {scope})")


def test_no_task_kind_branches_outside_the_task_table(report: dict) -> None:
    assert report["kind_branches"]["allowed_modules"] == sorted(ALLOW)
    branches = [b for b in report["kind_branches"]["disallowed"] if (b["module"], b["source"]) not in CHECKS]
    assert branches == [], "task-kind branches:\n" + lines(branches, "{module}:{line}  {source}")


def test_load_imports_no_training_code(report: dict) -> None:
    load = report["load"]
    assert "cvkit.inference" in load["roots"] and "cvkit.inference" in load["closure"]
    reached = [hit["chain"] for key in ("builders", "tasks", "train") for hit in load["reaches"][key]]
    assert not (load["contains_builders"] or load["contains_tasks"] or load["contains_train"]), (
        "cvkit.load imports:\n" + "\n".join(reached)
    )


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "cvkit" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_script_finds_cycles_violations_and_kind_branches(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_package(
        src,
        {
            "__init__.py": """\
            def __getattr__(name):
                if name == "load":
                    from cvkit.inference import load

                    return load
                raise AttributeError(name)
            """,
            "a.py": "from cvkit import b\n",
            "b.py": """\
            from typing import TYPE_CHECKING

            import cvkit.a

            if TYPE_CHECKING:
                from cvkit.c import C
            """,
            "c.py": "from cvkit.b import cvkit\n\nC = 1\n",  # c -> b only: the TYPE_CHECKING import makes no cycle
            "data/__init__.py": "",
            "data/loader.py": """\
            from cvkit.tasks.base import Task


            def make(kind):
                from cvkit.inference import load

                if kind == "detection":
                    return load
            """,
            "table.py": 'def head(kind):\n    return 2 if kind == "segmentation" else 1\n',
            "tasks/__init__.py": "",
            "tasks/base.py": "import pytorch_lightning as pl\n\n\nclass Task(pl.LightningModule):\n    pass\n",
            "inference/__init__.py": "from cvkit.tasks.base import Task\n\n\ndef load(path):\n    return Task\n",
        },
    )

    proc, data = run_structure(tmp_path / "fake.json", "--root", str(src), "--allow", "cvkit.table")
    assert proc.returncode == 1, proc.stdout
    assert data["ok"] is False

    assert data["cycles"]["components"] == [["cvkit.a", "cvkit.b"]]
    assert data["cycles"]["cycles"] == [["cvkit.a", "cvkit.b", "cvkit.a"]]
    assert [e["imported"] for e in data["imports"]["type_checking"]] == ["cvkit.c"]
    assert "cvkit.a -> cvkit.b -> cvkit.a" in proc.stdout

    found = {(v["importer"], v["imported"], v["line"], v["scope"]) for v in data["layer_violations"]}
    assert found == {
        ("cvkit.data.loader", "cvkit.tasks.base", 1, "module"),
        ("cvkit.data.loader", "cvkit.inference", 5, "lazy"),
    }
    assert "cvkit.data.loader -> cvkit.tasks.base (1)" in proc.stdout
    assert "cvkit.data.loader -> cvkit.inference (5, lazy)" in proc.stdout

    branches = data["kind_branches"]
    assert [(b["module"], b["line"]) for b in branches["disallowed"]] == [("cvkit.data.loader", 7)]
    assert [(b["module"], b["line"]) for b in branches["allowed"]] == [("cvkit.table", 2)]
    assert 'cvkit.data.loader:7  if kind == "detection":' in proc.stdout

    load = data["load"]
    assert load["roots"] == ["cvkit.inference"]
    assert load["contains_tasks"] and not load["contains_builders"] and not load["contains_train"]
    assert {"cvkit.tasks", "cvkit.tasks.base"} <= set(load["closure"]) and "cvkit.data.loader" not in load["closure"]
    assert [w["module"] for w in load["watched_importers"]] == ["cvkit.tasks.base"]

    proc, _ = run_structure(tmp_path / "fake.json", "--root", str(src), "--no-fail")
    assert proc.returncode == 0


def test_the_script_passes_a_clean_package(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_package(
        src,
        {
            "__init__.py": "",
            "x.py": "from cvkit import y\n\n\ndef f():\n    from cvkit import x  # lazy, to itself: no cycle\n",
            "y.py": "import json\n",
        },
    )
    proc, data = run_structure(tmp_path / "clean.json", "--root", str(src))
    assert proc.returncode == 0, proc.stdout
    assert data["ok"] and data["graph"] == {"cvkit": [], "cvkit.x": ["cvkit.y"], "cvkit.y": []}
    assert [(e["importer"], e["imported"]) for e in data["imports"]["lazy"]] == [("cvkit.x", "cvkit.x")]
