"""cvkit's configs composed in the test process, as the console scripts compose them."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict


def compose_train(output_dir: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """The composed cvkit config for `overrides`, writing into `output_dir`, on the CPU."""
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=["trainer.accelerator=cpu", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def export_cfg(checkpoint: Path, **values: object) -> DictConfig:
    """The composed cvkit-export config of `checkpoint`, with `values` overridden."""
    quoted = {
        key: f"'{value}'" if isinstance(value, str) else "null" if value is None else value
        for key, value in values.items()
    }
    overrides = [f"{key}={value}" for key, value in quoted.items()]
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        return compose(config_name="export", overrides=[f"ckpt_path={checkpoint}", *overrides])
