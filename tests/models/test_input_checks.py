"""An input size the network cannot take is refused from the config, for every task, before any data is read
or anything built: a ViT takes whole patches (the data root below does not even exist)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import assert_exit, run_cli

NOWHERE = "/nonexistent/data"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data=imagefolder", f"data.root={NOWHERE}", "backbone=vit", "data.image_size=100"],
            "data.image_size=100 is not a multiple of vit_tiny_patch16_224's patch size 16; use 96 or 112",
        ),
        (
            ["task=segmentation", "data=camvid", f"data.root={NOWHERE}", "backbone=vit", "data.image_size=[96,100]"],
            "data.image_size=100 is not a multiple of vit_tiny_patch16_224's patch size 16; use 96 or 112",
        ),
        (
            [
                "task=detection",
                "data=voc",
                f"data.root={NOWHERE}",
                "backbone=vit",
                "task.model.detector=ssdlite",
                "task.model.min_size=100",
            ],
            "task.model.min_size=100 is not a multiple of vit_tiny_patch16_224's patch size 16; use 96 or 112",
        ),
        (
            [
                "task=detection",
                "data=voc",
                f"data.root={NOWHERE}",
                "backbone=vit",
                "backbone.name=vit_small_patch14_dinov2",
            ],
            "its patch size 14 does not divide the multiples of 32 px that task.model.detector=fasterrcnn pads",
        ),
    ],
    ids=["classification", "segmentation", "ssdlite", "fasterrcnn"],
)
def test_a_vit_input_that_is_not_whole_patches_is_refused_first(tmp_path: Path, overrides, message) -> None:
    result = run_cli("cvkit-train", *overrides, f"hydra.run.dir={tmp_path}")
    assert_exit(result, 2, message, clean=True)
    assert not (tmp_path / "summary.json").exists()
