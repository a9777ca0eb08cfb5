"""Entry points: ``cvkit-train``, ``cvkit-eval``, ``cvkit-predict`` and ``cvkit-export`` (Hydra apps over the
configs in cvkit.configs). Each answers ``--help`` with its own text, and reports cvkit's user-facing errors as one
line with their exit status."""

from __future__ import annotations

import gc
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import hydra
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from cvkit.config import check_config_dirs, config_dirs, merge_overrides, validate
from cvkit.distributed import job_scope, rank_overrides, use_job_command_for_ddp_children
from cvkit.errors import CvkitError, message_of

if TYPE_CHECKING:
    from cvkit.checkpoints import SavedRun

log = logging.getLogger("cvkit")
CONFIG_MODULE = "cvkit.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


class Usage(NamedTuple):
    """What ``--help`` of a command says besides its config groups: its arguments (after the command's name),
    what it does (a sentence or two) and the docs page about it."""

    arguments: str
    about: str
    docs: str


USAGES = {
    "cvkit-train": Usage(
        "[GROUP=CHOICE ...] [KEY=VALUE ...] [-m]",
        "Train a classification, detection or segmentation model, composed from the groups below (e.g. "
        "experiment=bccd_cells, or task=detection data=voc data.root=DIR). resume=true continues the run in "
        "hydra.run.dir; -m runs one job per value of a comma-separated list (optimizer.lr=0.01,0.1).",
        "docs/training.md",
    ),
    "cvkit-eval": Usage(
        "ckpt_path=CKPT|RUN_DIR [splits=[val,test]] [GROUP=CHOICE ...] [KEY=VALUE ...]",
        "Evaluate a checkpoint (ckpt_path= is required; a run dir: its newest checkpoint) on its data's val and "
        "test splits. The run's training config, recorded in the checkpoint, is composed again; the groups and "
        "keys given here replace its own.",
        "docs/training.md",
    ),
    "cvkit-predict": Usage(
        "ckpt_path=CKPT|RUN_DIR input=IMAGE|FOLDER|'GLOB' output=FOLDER [KEY=VALUE ...]",
        "Run a trained checkpoint on images and write what it finds (classes, boxes or masks, drawn over the "
        "images unless draw=false) to the output folder.",
        "docs/inference.md",
    ),
    "cvkit-export": Usage(
        "ckpt_path=CKPT|RUN_DIR format=onnx|torchscript [output=FILE] [KEY=VALUE ...]",
        "Write a trained checkpoint as an ONNX or TorchScript file (output=; by default the checkpoint's path "
        "with .onnx or .pt), checked against PyTorch on a few images (images=, tolerance=).",
        "docs/inference.md",
    ),
}
HELP_WIDTH = 100


def _reporting_errors(job: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn cvkit's user-facing errors into one clear line and their exit status (2 for bad input, 3 for
    a failed run, 128 + N for signal N), without a traceback."""

    def run(cfg: DictConfig) -> Any:
        try:
            return job(cfg)
        except CvkitError as err:
            log.error("cvkit: %s", message_of(err))
            sys.exit(err.exit_code)
        except MissingMandatoryValue as err:
            log.error("cvkit: %s has no value: set it on the command line, e.g. %s=...", err.full_key, err.full_key)
            sys.exit(2)

    return run


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Run a command with Python's cyclic garbage collector off until `_freeze_imported_objects`: importing
    torch, Lightning, timm and torchmetrics makes a million long-lived objects, and the collections they set
    off walk them again and again (about 1 s of every command's start: docs/benchmarks.md, "Starting the
    process"). This is the pattern Python's ``gc.freeze`` documentation gives. On for good when it ends."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _freeze_imported_objects() -> None:
    """Move every object alive now (those of the imported libraries) out of the garbage collector's sight,
    with Python's ``gc.freeze``, and turn the collector on: those objects live until the process ends, and
    neither the collections during the run nor the interpreter's exit need to walk them (at exit that walk
    took about 1 s of every command: docs/benchmarks.md, "Ending the process"). Objects made later are
    collected as usual."""
    gc.freeze()
    gc.enable()


def _answer_help(command: str) -> None:
    """Print :func:`_help_text` of `command` and exit 0 when the command line asks for it (``--help``, ``-h``),
    before anything else is read or imported. Hydra's own help lists every group in cvkit's configs, whether
    the command composes it or not, and the bases that data configs extend (data/_detection) among them."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(_help_text(command, config_dirs(sys.argv[1:])))
        sys.exit(0)


def _help_text(command: str, user_dirs: Sequence[Path] = ()) -> str:
    """``--help`` of `command` (``cvkit-train``, ...): its arguments, what it does, the config groups it composes
    (those of its config, ``configs/<name>.yaml``) with their choices (also those in `user_dirs`, the command's
    ``--config-dir``), and where to read more."""
    usage, groups = USAGES[command], _config_groups(command.removeprefix("cvkit-"), user_dirs)
    listed = [
        textwrap.fill(", ".join(choices), HELP_WIDTH, initial_indent=f"  {group:<11}", subsequent_indent=" " * 13)
        for group, choices in groups.items()
    ]
    return "\n".join(
        [
            f"usage: {command} {usage.arguments}",
            "",
            textwrap.fill(usage.about, HELP_WIDTH),
            "",
            *(
                ["config groups (GROUP=CHOICE):", *listed]
                if groups
                else ["config groups: none (every setting is a KEY=VALUE)"]
            ),
            "",
            "Add --cfg job to print the config it would run with (every KEY=VALUE) without running it.",
            f"More in {usage.docs}.",
        ]
    )


def _config_groups(config_name: str, user_dirs: Sequence[Path]) -> dict[str, list[str]]:
    """The config groups that `config_name` composes (Hydra's own ``hydra/...`` apart), each with its choices:
    its configs in cvkit's and in `user_dirs`, less the internal bases named ``_*`` that the others extend."""
    with hydra.initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        choices = hydra.compose(config_name=config_name, return_hydra_config=True).hydra.runtime.choices
        cvkits = GlobalHydra.instance().config_loader().get_group_options
        found = {group: set(cvkits(group)) for group in sorted(choices) if not _internal_group(group)}
    for folder in user_dirs:  # Hydra searches a --config-dir's groups too
        for group, names in found.items():
            names.update(path.stem for path in folder.expanduser().glob(f"{group}/*.yaml"))
    return {group: sorted(name for name in names if not name.startswith("_")) for group, names in found.items()}


def _internal_group(group: str) -> bool:
    """Hydra's own groups, and ``data_for_task`` (which train.yaml picks by the data and the task: no user's choice)."""
    return group.split("/")[0] == "hydra" or group.split("@")[0] == "data_for_task"


@_reporting_errors
def _train(cfg: DictConfig) -> float | None:
    validate(cfg)  # before the training stack is imported: a bad value answers at once
    from cvkit.train import train

    _freeze_imported_objects()

    use_job_command_for_ddp_children()
    with job_scope():
        metrics, _ = train(cfg)
    return metrics.get(cfg.task.monitor)


def _predict(cfg: DictConfig) -> None:
    from cvkit.predict import predict

    _freeze_imported_objects()

    predict(cfg)


def _export(cfg: DictConfig) -> None:
    from cvkit.export import export

    _freeze_imported_objects()

    export(cfg)


def _check_arguments() -> None:
    """Before Hydra composes the config: exit with one line and status 2 on a ``--config-dir`` YAML file that
    cannot be parsed (Hydra's own report of it is a traceback), and turn a ``ckpt_path=`` that names a run
    dir into the newest readable checkpoint in it."""
    try:
        check_config_dirs(sys.argv[1:])
        sys.argv = [sys.argv[0], *map(_checkpoint_file_argument, sys.argv[1:])]
    except CvkitError as err:
        _refuse(err)


def _refuse(err: CvkitError) -> NoReturn:
    print(f"cvkit: {message_of(err)}", file=sys.stderr)
    sys.exit(err.exit_code)


def _checkpoint_file_argument(argument: str) -> str:
    key, _, value = argument.partition("=")
    if key != "ckpt_path" or not Path(value).expanduser().is_dir():
        return argument
    from cvkit.checkpoints import checkpoint_in

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")  # Hydra's logging starts later
    return f"ckpt_path={checkpoint_in(value)}"


def _use_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` available: Hydra's plugin scan finds cvkit's sweeper in a regular install,
    not in an editable one, which it is registered for here."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    plugins = Plugins.instance()  # the first call scans hydra_plugins
    scanned = [found.__module__ for found in plugins.discover(Sweeper)]
    if "hydra_plugins.cvkit_optuna_sweeper.optuna_sweeper" not in scanned:
        from hydra_plugins.cvkit_optuna_sweeper.optuna_sweeper import OptunaSweeper

        plugins.register(OptunaSweeper)


def train_main() -> None:
    _answer_help("cvkit-train")
    _check_arguments()
    _use_optuna_sweeper()
    sys.argv = rank_overrides(sys.argv)
    with _collector_paused():
        hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")(_train)()


def _read_checkpoint(argv: list[str]) -> SavedRun:
    """The checkpoint named by the last ``ckpt_path=`` of `argv`, read once; one line and exit 2 without one."""
    from cvkit.checkpoints import SavedRun

    paths = [arg.split("=", 1)[1] for arg in argv if arg.startswith("ckpt_path=")]
    try:
        if not paths or not paths[-1]:
            raise CvkitError(
                "ckpt_path is not set: give the checkpoint to evaluate, e.g. cvkit-eval "
                "ckpt_path=outputs/run/checkpoints/last.ckpt (or a run dir: its newest checkpoint)"
            )
        return SavedRun.read(paths[-1], "ckpt_path")
    except CvkitError as err:
        _refuse(err)


def eval_main() -> None:
    """Read the checkpoint once; re-compose its training config (train.yaml and the run's overrides), with the
    given overrides applied on top; evaluate it."""
    with _collector_paused():
        _evaluate_main()


def _evaluate_main() -> None:
    _answer_help("cvkit-eval")
    _check_arguments()
    given = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    flags = [arg for arg in sys.argv[1:] if arg not in given]  # Hydra's own flags, with their values
    saved = _read_checkpoint(given)
    recorded = list(saved.record.overrides) if saved.record else []
    sys.argv = [sys.argv[0], *flags, *merge_overrides(recorded, given)]

    @_reporting_errors
    def evaluate_saved(cfg: DictConfig) -> None:
        from cvkit.evaluate import evaluate

        _freeze_imported_objects()

        evaluate(cfg, saved)

    hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")(evaluate_saved)()


def predict_main() -> None:
    _answer_help("cvkit-predict")
    _check_arguments()
    with _collector_paused():
        hydra.main(config_path=CONFIG_PATH, config_name="predict", version_base="1.3")(_reporting_errors(_predict))()


def export_main() -> None:
    _answer_help("cvkit-export")
    _check_arguments()
    with _collector_paused():
        hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")(_reporting_errors(_export))()
