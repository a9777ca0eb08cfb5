"""The package structure: the import contracts of pyproject.toml hold (import-linter, as CI runs it), they
catch a violation, and no module outside the per-task tables branches on a task's name."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

SRC = REPO / "src"
TASKS = ("classification", "detection", "segmentation")
# Comparisons of task names that choose no behaviour: refusing another task's checkpoint.
CHECKS = {("cvkit.checkpoints.content", "if self.task != kind:")}


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the package under `src`, with the contracts of pyproject.toml."""
    command = [str(Path(sys.executable).parent / "lint-imports"), "--config", str(REPO / "pyproject.toml")]
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False)


def test_the_import_contracts_hold() -> None:
    result = lint_imports(SRC)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_the_contracts_catch_a_task_that_imports_inference(tmp_path: Path) -> None:
    shutil.copytree(SRC / "cvkit", tmp_path / "cvkit", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "cvkit" / "tasks" / "base.py").open("a") as module:
        module.write("\nimport cvkit.inference.predictor  # a violation\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "layer not each other BROKEN" in result.stdout
    assert "cvkit.tasks.base -> cvkit.inference.predictor" in result.stdout


def task_name_comparisons(path: Path) -> list[tuple[int, str]]:
    """(line, source) of each comparison in `path` with a task's name, or of two task kinds (names such as
    ``kind``, ``task.kind``, ``self.task``)."""

    def task_name(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in TASKS
        return isinstance(node, ast.Tuple | ast.List | ast.Set) and any(map(task_name, node.elts))

    def task_kind(node: ast.AST) -> bool:
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        return name.endswith("kind") or name == "task"

    text = path.read_text()
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(map(task_name, operands)) or all(map(task_kind, operands)):
            found.append((node.lineno, text.splitlines()[node.lineno - 1].strip()))
    return found


def test_no_module_branches_on_the_task() -> None:
    # What depends on the task lives in the task classes and the per-task tables (models/networks.py NETWORKS,
    # inference/kinds.py INFERENCE_KINDS), which are looked up, not branched on.
    branches = {
        (".".join(path.relative_to(SRC).with_suffix("").parts), source)
        for path in (SRC / "cvkit").rglob("*.py")
        for _, source in task_name_comparisons(path)
    }
    assert branches == CHECKS


def test_the_branch_finder_finds_branches(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('def f(kind, task):\n    if kind == "detection":\n        return task.kind == kind\n')
    assert task_name_comparisons(module) == [(2, 'if kind == "detection":'), (3, "return task.kind == kind")]
