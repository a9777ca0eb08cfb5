"""``--help`` of every console script: exit 0, cvkit's own text (what the command does, its key arguments, the
config groups it composes with their real choices), and no torch imported to answer it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import assert_exit, run_cli

TRAINING_GROUPS = ("backbone", "callbacks", "data", "experiment", "logger", "optimizer", "scheduler", "task", "trainer")
# The key arguments each command's help names.
KEY_ARGUMENTS = {
    "cvkit-train": ("GROUP=CHOICE", "KEY=VALUE", "-m"),
    "cvkit-eval": ("ckpt_path=",),
    "cvkit-predict": ("ckpt_path=", "input=", "output="),
    "cvkit-export": ("ckpt_path=", "format=onnx|torchscript", "output="),
    "cvkit-data": ("check", "convert", "data=voc", "--to"),
}
ENTRY_POINTS = {
    "cvkit-train": "cvkit.cli:train_main",
    "cvkit-eval": "cvkit.cli:eval_main",
    "cvkit-predict": "cvkit.cli:predict_main",
    "cvkit-export": "cvkit.cli:export_main",
    "cvkit-data": "cvkit.data_cli:main",
}


def group_lines(text: str) -> dict[str, str]:
    """The config groups a help text lists (``  group  choice, choice, ...`` under "config groups"), with their
    choices as one line."""
    if "\nconfig groups (" not in text:
        return {}
    listed = text.split("\nconfig groups (", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    groups: dict[str, str] = {}
    for line in listed:
        name, _, choices = line.strip().partition(" ")
        if line.startswith("  ") and not line.startswith("   "):
            groups[name] = choices.strip()
        else:  # a wrapped line of the group above
            groups[list(groups)[-1]] += " " + line.strip()
    return groups


@pytest.mark.parametrize("command", list(KEY_ARGUMENTS))
def test_help_says_what_the_command_does_and_names_its_key_arguments(command: str) -> None:
    result = run_cli(command, "--help", timeout=120)
    assert_exit(result, 0, *KEY_ARGUMENTS[command], clean=True)
    assert "Powered by Hydra" not in result.stdout
    internal = re.findall(r"(?<![\w])_(?:classification|detection|segmentation)\b", result.stdout)
    assert internal == [], "the internal base configs (configs/data/_*.yaml) are no choice"
    if command != "cvkit-data":  # argparse's own layout
        assert "--cfg job" in result.stdout and "docs/" in result.stdout


@pytest.mark.parametrize("command", ["cvkit-train", "cvkit-eval"])
def test_training_commands_list_the_training_groups_with_their_real_choices(command: str) -> None:
    groups = group_lines(run_cli(command, "--help", timeout=120).stdout)
    assert tuple(groups) == TRAINING_GROUPS
    assert groups["data"].split(", ") == [
        *("camvid", "cifar10", "coco", "coco_instances", "coco_seg", "digits", "fashion_mnist", "imagefolder"),
        *("masks", "mnist", "streaming", "voc", "voc_seg", "yolo", "yolo_seg"),
    ]
    assert groups["task"] == "classification, detection, instance_segmentation, segmentation"


@pytest.mark.parametrize("command", ["cvkit-predict", "cvkit-export"])
def test_inference_commands_list_no_training_groups(command: str) -> None:
    # predict.yaml and export.yaml compose no group of cvkit's: every setting is a KEY=VALUE.
    text = run_cli(command, "--help", timeout=120).stdout
    assert group_lines(text) == {} and "config groups: none" in text
    for group in TRAINING_GROUPS:
        assert f"{group}:" not in text and f"  {group} " not in text


def test_help_lists_the_choices_a_config_dir_adds(tmp_path: Path) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  max_epochs: 2\n")
    (tmp_path / "experiment" / "_base.yaml").write_text("{}\n")
    groups = group_lines(run_cli("cvkit-train", "--config-dir", str(tmp_path), "--help", timeout=120).stdout)
    assert groups["experiment"].split(", ")[-1] == "mine" and "_base" not in groups["experiment"]


def test_short_help_flag_gives_the_same_text() -> None:
    assert run_cli("cvkit-predict", "-h", timeout=120).stdout == run_cli("cvkit-predict", "--help", timeout=120).stdout


@pytest.mark.parametrize("command", list(ENTRY_POINTS))
def test_help_answers_without_importing_torch(command: str) -> None:
    # The entry point itself, as the console script calls it; then which heavy libraries the process holds.
    module, function = ENTRY_POINTS[command].split(":")
    code = (
        f"import sys, {module}\n"
        f"sys.argv = [{command!r}, '--help']\n"
        f"code = None\ntry:\n    {module}.{function}()\nexcept SystemExit as stop:\n    code = stop.code\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'timm')]\n"
        "print('EXIT', code, 'HEAVY', ' '.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    exit_code, heavy = result.stderr.rsplit("EXIT ", 1)[1].split(" HEAVY")
    assert heavy.strip() == "", f"{command} --help imported {heavy.split()[:5]}"
    assert exit_code.strip() == "0", result.stderr[-2000:]
