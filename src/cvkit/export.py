"""export(cfg): a checkpoint's network as ONNX or TorchScript, kept only if it computes what PyTorch does."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cvkit.builders import build_datamodule
from cvkit.console import print_table
from cvkit.data.batches import Unreadable, finish_batch
from cvkit.data.images import CorruptImageError, read_rgb
from cvkit.errors import CvkitError
from cvkit.inference import Predictor
from cvkit.inference.export import (
    SUFFIXES,
    check_supported,
    export_onnx,
    export_torchscript,
    input_description,
    run_exported,
    run_reference,
)
from cvkit.inference.inputs import find_images
from cvkit.inference.kinds import inference_kind
from cvkit.inference.loading import load


def check_images(cfg: DictConfig, predictor: Predictor) -> list[torch.Tensor]:
    """Up to ``cfg.check_count`` prepared images for the parity check: from ``cfg.images``, or else the
    first images of the recorded run's val split."""
    count = int(cfg.check_count)
    if cfg.images:
        paths, _ = find_images(str(cfg.images))
        prepared = []
        for path in paths:
            try:
                prepared.append(predictor.prepare(read_rgb(path)))
            except CorruptImageError:
                continue
            if len(prepared) == count:
                return prepared
        if not prepared:
            raise CvkitError(f"images={cfg.images}: none of its images could be read")
        return prepared
    try:
        datamodule = build_datamodule(OmegaConf.create(predictor.config))
    except CvkitError as err:
        raise CvkitError(
            f"the parity check needs real images: the run's val data cannot be read here ({err}); give "
            "images=FILE|FOLDER|GLOB"
        ) from err
    dataset = datamodule.make_dataset("val", train=False)
    samples = (dataset[index] for index in range(len(dataset)))
    readable = list(islice((s for s in samples if not isinstance(s, Unreadable)), count))
    images = finish_batch(datamodule.collate(readable), datamodule.image_finisher())[0]  # as the network gets them
    return list(images)


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export ``cfg.ckpt_path`` in ``cfg.format`` to ``cfg.output``; run the export next to the PyTorch
    network on real images and keep it only when their largest absolute difference is within tolerance."""
    predictor = load(cfg.ckpt_path, device="cpu")
    form = inference_kind(predictor.kind).export
    check_supported(form, str(cfg.format))
    output = Path(cfg.output or Path(cfg.ckpt_path).with_suffix(SUFFIXES[cfg.format])).expanduser()
    images = check_images(cfg, predictor)
    if not form.batched:
        example, inputs = images[0], images
    elif len({tuple(x.shape) for x in images}) == 1:  # traced with up to 2 images, checked on all at once
        example, inputs = torch.stack(images[:2]), [torch.stack(images)]
    else:
        example, inputs = images[0][None], [x[None] for x in images]
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        if cfg.format == "onnx":
            export_onnx(predictor, form, example, partial, int(cfg.opset))
        else:
            export_torchscript(predictor, form, example, partial)
        exported = run_exported(partial, cfg.format, inputs)
        difference = form.difference(run_reference(predictor, form, inputs), exported)
        tolerance = float(cfg.tolerance if cfg.tolerance is not None else form.tolerance)
        if not difference <= tolerance:
            raise CvkitError(
                f"the {cfg.format} export differs from the PyTorch model by up to {difference:.3g} on "
                f"{len(images)} images (tolerance {tolerance:g}); nothing was written to {output}"
            )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    description = input_description(predictor, form)
    print_table(
        f"cvkit export: {cfg.format}",
        {
            "checkpoint": cfg.ckpt_path,
            "model": predictor.describe(),
            "output": output,
            **{key.replace("_", " "): value for key, value in description.items() if key != "task"},
            "parity": f"largest |difference| {difference:.3g} on {len(images)} images (tolerance {tolerance:g})",
        },
    )
    return {"output": output, "difference": difference, "tolerance": tolerance, "metadata": description}
