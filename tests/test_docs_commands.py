"""The README and docs/ as a reader uses them: every cvkit command in them composes as written, the README's
links lead somewhere, and the front page's commands run, on the real datasets laid out as it names them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from cvkit.data_cli import parse_arguments
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.documented import (
    DocumentedCommand,
    commands_in,
    documented_commands,
    one_point_of_each_sweep,
    split_alternatives,
)
from tests.helpers.paths import REPO

COMMANDS = documented_commands()
FRONT_PAGE = commands_in(REPO / "README.md")
# The front page's runs, at the smallest scale: one batch of each split, one epoch.
SMALL_SCALE = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)
NEEDS_A_CLUSTER = ("trainer=gpu", "trainer=ddp")  # GPUs, or several machines: composed here, not run
LINK = re.compile(r"\]\(([^)\s]+)\)")


def write_user_configs(folder: Path) -> None:
    """The folder the docs' ``--config-dir my_configs experiment=mine`` example describes."""
    experiment = folder / "my_configs" / "experiment"
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / "mine.yaml").write_text("# @package _global_\ntrainer:\n  max_epochs: 2\n")


def test_the_docs_show_every_console_command() -> None:
    shown = {command.program for command in COMMANDS}
    assert shown == {"cvkit-train", "cvkit-eval", "cvkit-predict", "cvkit-export", "cvkit-data"}
    assert len(COMMANDS) >= 40  # the extraction itself still finds the docs' commands


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the default run, at SMALL_SCALE: what cvkit-eval composes its config from."""
    run_dir = tmp_path_factory.mktemp("digits")
    assert_exit(run_cli("cvkit-train", *SMALL_SCALE, f"hydra.run.dir={run_dir}"), 0)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: f"{command.where}:{command.program}")
def test_documented_command_composes(
    command: DocumentedCommand, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``--cfg job`` composes the command's config (one job of a sweep) without running it."""
    write_user_configs(tmp_path)
    program, args = command.program, one_point_of_each_sweep(split_alternatives(command.args))
    if program == "cvkit-data":  # its options as documented exist; its overrides are those of a detection run
        program, args = "cvkit-train", ["task=detection", *parse_arguments(args).overrides]
    if program == "cvkit-eval":  # composes the training run's config from the checkpoint, so it needs one
        checkpoint = request.getfixturevalue("digits_checkpoint")
        args = [*(arg for arg in args if not arg.startswith("ckpt_path=")), f"ckpt_path={checkpoint}"]
    result = run_cli(program, *[arg for arg in args if arg != "-m"], "--cfg", "job", cwd=tmp_path)
    assert_exit(result, 0, clean=True)


@pytest.mark.parametrize("document", ["README.md", "docs/index.md"])
def test_links_lead_to_files_and_headings(document: str) -> None:
    """mkdocs' strict build checks the links inside docs/; this checks those of the pages outside it too."""
    source = REPO / document
    for target in LINK.findall(source.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (source.parent / file) if file else source
        assert path.exists(), f"{document}: {target} leads nowhere"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
            assert anchor in {slugify(heading, "-") for heading in headings}, f"{document}: no heading {target}"


@pytest.fixture(scope="module")
def readers_folder(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the front page assumes, its data the real datasets: `my_images` (the blood-cell
    crops), `coco/` (coco128 as both splits), `CamVid`, `data/FashionMNIST` (its files present, so
    ``data.download=true`` fetches nothing) and `photos/` (a few digits)."""
    folder = tmp_path_factory.mktemp("reader")
    links = {
        "my_images": data_root / "bccd_cells",
        "CamVid": data_root / "CamVid",
        "coco/train2017": data_root / "coco128" / "images" / "train2017",
        "coco/val2017": data_root / "coco128" / "images" / "train2017",
        "coco/annotations/instances_train2017.json": data_root / "coco128/annotations/instances_train2017.json",
        "coco/annotations/instances_val2017.json": data_root / "coco128/annotations/instances_train2017.json",
        "data/FashionMNIST": data_root / "FashionMNIST",
    }
    for name, target in links.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(target)
    photos = folder / "photos"
    photos.mkdir()
    for index, image in enumerate(sorted((data_root / "bccd_cells" / "val" / "WBC").glob("*.jpg"))[:3]):
        shutil.copy(image, photos / f"cell{index}.jpg")
    return folder


def test_front_page_commands_run(readers_folder: Path) -> None:
    """Every command of the README that needs no GPU or cluster, in order, as written (training runs at
    SMALL_SCALE): quick start, one run per task, resume, then eval, predict and export of that run."""
    ran = []
    for command in FRONT_PAGE:
        if command.launcher or any(arg in NEEDS_A_CLUSTER for arg in command.args):
            continue
        scale = SMALL_SCALE if command.program == "cvkit-train" else ()
        result = run_cli(command.program, *command.args, *scale, cwd=readers_folder)
        assert_exit(result, 0, clean=True)
        ran.append(command.program)
    assert ran.count("cvkit-train") >= 6 and {"cvkit-eval", "cvkit-predict", "cvkit-export"} <= set(ran)
    assert (readers_folder / "outputs" / "digits" / "metrics.json").is_file()
    assert list((readers_folder / "outputs" / "eval").glob("*/metrics.json"))
    assert (readers_folder / "predictions" / "predictions.csv").is_file()
    assert (readers_folder / "digits.onnx").is_file()
