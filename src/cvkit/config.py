"""Config checks that Hydra cannot do, and the override bookkeeping behind cvkit-eval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from cvkit.errors import CvkitError

# Keys whose type matters before anything is built: key -> (accepted types, what a valid value looks like).
TYPED_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "seed": ((int,), "an integer, e.g. seed=42"),
    "trainer.max_epochs": ((int,), "an integer, e.g. trainer.max_epochs=10"),
    "trainer.num_nodes": ((int,), "an integer, e.g. trainer.num_nodes=2"),
    "trainer.accumulate_grad_batches": ((int,), "an integer, e.g. trainer.accumulate_grad_batches=2"),
    "trainer.limit_train_batches": ((int, float), "a count or a fraction, e.g. trainer.limit_train_batches=0.1"),
    "trainer.limit_val_batches": ((int, float), "a count or a fraction, e.g. trainer.limit_val_batches=10"),
    "data.batch_size": ((int, str), "an integer or auto, e.g. data.batch_size=64"),
    "data.num_workers": ((int, str), "an integer or auto, e.g. data.num_workers=4"),
    "data.image_size": ((int, ListConfig), "pixels, e.g. data.image_size=224 (or [height,width] for segmentation)"),
    "optimizer.lr": ((int, float), "a number, e.g. optimizer.lr=0.1"),
    "optimizer.base_batch_size": ((int,), "an integer, e.g. optimizer.base_batch_size=256"),
}


# Keys that hold a list, and an example of one: a single value given on the command line (data.mean=0.5)
# would otherwise fail deep inside a library without naming the key.
LIST_KEYS: dict[str, str] = {
    "data.mean": "data.mean=[0.485,0.456,0.406]",
    "data.std": "data.std=[0.229,0.224,0.225]",
    "data.class_names": "data.class_names=[cat,dog]",
    "data.train_transforms": "data.train_transforms=[] (or a list in a config file)",
    "data.eval_transforms": "data.eval_transforms=[]",
    "task.model.image_mean": "task.model.image_mean=[0.485,0.456,0.406]",
    "task.model.image_std": "task.model.image_std=[0.229,0.224,0.225]",
    "task.model.aspect_ratios": "task.model.aspect_ratios=[0.5,1.0,2.0]",
    "task.model.decoder_widths": "task.model.decoder_widths=[256,128,64,32,16]",
    "optimizer.betas": "optimizer.betas=[0.9,0.999]",
    "scheduler.milestones": "scheduler.milestones=[30,60,80]",
    "splits": "splits=[val,test]",
}
# Those of them that hold one number per colour channel.
PER_CHANNEL_KEYS = ("data.mean", "data.std", "task.model.image_mean", "task.model.image_std")


# Typed keys whose value must also be above zero.
POSITIVE_KEYS = (
    "trainer.max_epochs",
    "trainer.num_nodes",
    "trainer.accumulate_grad_batches",
    "data.batch_size",
    "optimizer.lr",
    "optimizer.base_batch_size",
)


# The backbone config keys that say how the backbone trains, not what it is: read by the training plan
# (cvkit.optim.Freezing), left out of what builds the network.
FREEZE_KEYS = ("freeze", "freeze_epochs", "freeze_stages", "unfreeze_lr_start", "unfreeze_warmup_epochs")


# The callbacks of configs/callbacks/default.yaml that write checkpoints.
CHECKPOINT_CALLBACKS = ("model_checkpoint", "checkpoints")


def validate(cfg: DictConfig) -> None:
    """Fail with the key, the value and an example when a typed key holds the wrong kind of value, or a value
    that must be above zero is not. Needs nothing but the config: the CLI calls it before torch is imported."""
    for key, (types, example) in TYPED_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types) or (isinstance(value, str) and value != "auto"):
            raise CvkitError(f"{key}={value!r} is not valid: it must be {example}")
        if key in POSITIVE_KEYS and value != "auto" and value <= 0:
            raise CvkitError(f"{key}={value!r} is not valid: it must be above 0, e.g. {example.split('e.g. ')[-1]}")
    check_lists(cfg)
    check_checkpointing(cfg)
    check_unfreezing_under_ddp(cfg)
    check_frozen_backbone_has_weights(cfg)


def check_lists(cfg: DictConfig) -> None:
    """Fail with the key and an example when a key of :data:`LIST_KEYS` holds something else than a list (or
    a per-channel key not three numbers)."""
    for key, example in LIST_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            continue
        if not isinstance(value, ListConfig):
            raise CvkitError(f"{key}={value!r} is not valid: it must be a list, e.g. {example}")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if key in PER_CHANNEL_KEYS and (len(value) != 3 or not numbers):
            raise CvkitError(f"{key}={list(value)} is not valid: it must be 3 numbers (R, G, B), e.g. {example}")


def check_frozen_backbone_has_weights(cfg: DictConfig) -> None:
    """Refuse freezing a backbone that starts from random weights: it would train the head on random features.
    Weights come from ``backbone.weights``, ``backbone.pretrained`` or ``init_from``."""
    backbone = OmegaConf.select(cfg, "backbone", default=None) or {}
    frozen = [f"backbone.{key}" for key in ("freeze", "freeze_epochs", "freeze_stages") if backbone.get(key)]
    sources = ("backbone.weights", "backbone.pretrained", "init_from")
    if frozen and not any(OmegaConf.select(cfg, key, default=None) for key in sources):
        raise CvkitError(
            f"{frozen[0]}: the backbone starts from random weights, and a frozen one would give the head random "
            "features to learn from; give the weights to start from: backbone.weights=/path/to/file (a timm or "
            "torchvision file, a .safetensors file, a cvkit checkpoint), backbone.pretrained=true or init_from"
        )


def check_unfreezing_under_ddp(cfg: DictConfig) -> None:
    """Refuse ``backbone.freeze_epochs`` under DDP (a ``ddp*`` strategy, or ``auto`` with several devices or
    nodes) that does not look for unused parameters: DDP synchronises the gradients of the parameters that take
    them when it wraps the model, and a frozen backbone takes none until it is unfrozen (DDP would fail at its
    second step). ``trainer.devices=auto`` on a machine with several GPUs is not known here: DDP's own error
    then names the setting."""
    if not OmegaConf.select(cfg, "backbone.freeze_epochs", default=0):
        return
    strategy = OmegaConf.select(cfg, "trainer.strategy", default="auto")
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    several = (
        (isinstance(devices, int) and devices not in (0, 1))
        or (isinstance(devices, ListConfig) and len(devices) > 1)
        or (OmegaConf.select(cfg, "trainer.num_nodes", default=1) or 1) > 1
    )
    ddp = isinstance(strategy, str) and (strategy.startswith("ddp") or (strategy == "auto" and several))
    if ddp and "find_unused_parameters_true" not in strategy:
        raise CvkitError(
            f"backbone.freeze_epochs with trainer.strategy={strategy} on several devices (DDP): DDP must know that "
            "the frozen backbone takes no gradients at first; use trainer.strategy=ddp_find_unused_parameters_true"
        )


def check_checkpointing(cfg: DictConfig) -> None:
    """Refuse ``trainer.enable_checkpointing=false`` beside callbacks that write checkpoints (Lightning's own
    refusal names only ModelCheckpoint), saying which to remove."""
    if OmegaConf.select(cfg, "trainer.enable_checkpointing", default=True) is not False:
        return
    writers = [f"callbacks.{name}" for name in CHECKPOINT_CALLBACKS if OmegaConf.select(cfg, f"callbacks.{name}")]
    if writers:
        raise CvkitError(
            f"trainer.enable_checkpointing=false, but {' and '.join(writers)} write checkpoints: remove them as "
            f"well ({' '.join('~' + key for key in writers)}), or leave checkpointing on"
        )


# Recorded training overrides that never carry over into an evaluation.
NOT_FOR_EVAL = ("hydra", "ckpt_path", "resume", "init_from", "trainer", "logger", "callbacks", "test_after_fit")


def override_key(override: str) -> str:
    """The config key an override sets: ``+data.root=x`` -> ``data.root``, ``data=voc`` -> ``data``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(recorded: Sequence[str], given: Sequence[str]) -> list[str]:
    """The recorded overrides of a training run, minus those the `given` ones replace, then `given`.

    A given key replaces the recorded key itself and everything below it, so choosing another group
    (``data=imagefolder``) drops the recorded ``data.*`` values of the old one.
    """
    replaced = [override_key(o) for o in given] + list(NOT_FOR_EVAL)

    def kept(override: str) -> bool:
        key = override_key(override)
        return not any(key == r or key.startswith((r + ".", r + "/")) for r in replaced)

    return [o for o in recorded if kept(o)] + list(given)


def config_dirs(argv: Sequence[str]) -> list[Path]:
    """The folders that `argv` adds to the config search path (``--config-dir DIR``, ``--config-dir=DIR``, ``-cd
    DIR``)."""
    dirs = []
    for position, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and position + 1 < len(argv):
            dirs.append(Path(argv[position + 1]))
        elif arg.startswith(("--config-dir=", "-cd=")):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def check_config_dirs(argv: Sequence[str]) -> None:
    """Refuse a YAML file of a ``--config-dir`` in `argv` that cannot be parsed, naming the file and the place
    (Hydra reports it as a traceback of its own)."""
    for folder in config_dirs(argv):
        for path in sorted(Path(folder).expanduser().rglob("*.yaml")):
            try:
                OmegaConf.load(path)
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise CvkitError(f"--config-dir {folder}: {path} is not valid YAML{where}: {problem}") from err
