"""Config composition and the override bookkeeping of cvkit-eval."""

import inspect
import subprocess
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from cvkit.builders import build_trainer
from cvkit.config import merge_overrides
from cvkit.errors import CvkitError
from tests.helpers.configs import compose_train
from tests.helpers.paths import REPO


def test_every_backbone_family_and_data_option_composes(tmp_path: Path) -> None:
    for family in ("resnet", "inception", "mobilenet", "efficientnet", "vit"):
        assert compose_train(tmp_path, f"backbone={family}").backbone.family == family
    for data in ("digits", "imagefolder", "mnist", "fashion_mnist", "cifar10"):
        assert compose_train(tmp_path, f"data={data}").data.batch_size == 64
    for data in ("voc", "coco"):
        assert compose_train(tmp_path, "task=detection", f"data={data}").data.batch_size == 4


def test_experiment_overrides_groups(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "experiment=bccd_cells", "data.root=/somewhere")
    assert cfg.data._target_.endswith("ImageFolderDataModule")
    assert (cfg.backbone.name, cfg.data.image_size, cfg.trainer.max_epochs) == ("resnet18", 64, 5)
    # the transforms follow the experiment's image size
    assert cfg.data.eval_transforms[0].height == 64
    detection = compose_train(tmp_path, "experiment=bccd_detection", "data.root=/somewhere")
    assert detection.task._target_.endswith("DetectionTask") and detection.data._target_.endswith(
        "VOCDetectionDataModule"
    )
    assert (detection.task.model.detector, detection.optimizer.base_batch_size) == ("fasterrcnn", 16)


@pytest.mark.parametrize(
    ("recorded", "given", "expected"),
    [
        (
            ["data=imagefolder", "data.root=a", "trainer.max_epochs=5"],
            ["ckpt_path=x"],
            ["data=imagefolder", "data.root=a", "ckpt_path=x"],
        ),
        (
            ["data=imagefolder", "data.root=a", "backbone.name=resnet50"],
            ["data=digits", "ckpt_path=x"],
            ["backbone.name=resnet50", "data=digits", "ckpt_path=x"],
        ),
        (["data.root=a", "hydra.run.dir=old", "resume=true"], ["data.root=b"], ["data.root=b"]),
        (["+data.extra=1"], ["data.extra=2"], ["data.extra=2"]),
    ],
)
def test_eval_overrides_replace_recorded_ones_key_by_key(recorded, given, expected) -> None:
    assert merge_overrides(recorded, given) == expected


def test_slurm_launcher_composes_with_submitit() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.signal_delay_s, launcher.gpus_per_node, launcher.max_num_timeout) == (120, 1, 5)


def test_sbatch_example_parses_and_requeues_into_the_same_run_dir() -> None:
    script = REPO / "scripts" / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    for needed in (
        "#SBATCH --signal=SIGUSR1@",
        "#SBATCH --requeue",
        'hydra.run.dir="outputs/slurm/${SLURM_JOB_ID}"',
        "resume=true",
        "srun cvkit-train trainer=ddp",
    ):
        assert needed in text


def keyword_defaults(cls: type) -> dict[str, object]:
    """The keyword defaults of `cls`'s constructor and those of its bases that it passes keywords on to."""
    found: dict[str, object] = {}
    for base in reversed(cls.__mro__):
        if "__init__" in vars(base):
            parameters = inspect.signature(vars(base)["__init__"]).parameters.values()
            found.update({p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty})
    return found


# Presets that extend another data config and set its values for one dataset (not defaults).
PRESETS = ("camvid",)
# Lists of transforms: a config's recipe, which the code has no default for (None: no steps).
RECIPES = ("train_transforms", "eval_transforms")


@pytest.mark.parametrize(
    "name", [p.stem for p in (REPO / "configs" / "data").glob("[!_]*.yaml") if p.stem not in PRESETS]
)
def test_data_module_defaults_agree_with_their_configs(tmp_path: Path, name: str) -> None:
    # Data modules keep keyword defaults for use from Python; a config that sets another value would mean two
    # defaults for one setting.
    data = OmegaConf.to_container(compose_train(tmp_path, f"data={name}").data, resolve=False)
    defaults = keyword_defaults(get_class(data["_target_"]))
    shared = [key for key in data if key in defaults and key not in RECIPES and not str(data[key]).startswith("${")]
    assert shared, f"data={name}: no setting in common with the code"
    disagree = {key: (data[key], defaults[key]) for key in shared if data[key] != defaults[key]}
    assert not disagree, f"data={name}: config vs code default {disagree}"


def test_auto_loader_workers_follow_the_cores_per_device() -> None:
    from cvkit.batching import loader_workers

    assert loader_workers(3, cores=64, local_devices=8, on_gpu=True) == 3  # a number is kept
    assert loader_workers("auto", cores=64, local_devices=8, on_gpu=True) == 8
    assert loader_workers("auto", cores=16, local_devices=1, on_gpu=True) == 16
    assert loader_workers("auto", cores=4, local_devices=8, on_gpu=True) == 1
    assert loader_workers("auto", cores=2, local_devices=1, on_gpu=False) == 2
    assert loader_workers("auto", cores=1, local_devices=1, on_gpu=False) == 1


def test_settings_for_a_callback_the_chosen_group_lacks_are_named(tmp_path: Path) -> None:
    """experiment=bccd_detr tunes callbacks.ema; with callbacks=default there is no EMA to tune: one line says
    so, instead of Lightning failing on a plain dict as a callback."""
    cfg = compose_train(tmp_path, "experiment=bccd_detr", "callbacks=default")
    with pytest.raises(CvkitError, match=r"callbacks.ema has settings \(decay\) but the "):
        build_trainer(cfg)
    assert any(
        type(c).__name__ == "EMAWeightAveraging"
        for c in build_trainer(compose_train(tmp_path, "experiment=bccd_detr")).callbacks
    )
