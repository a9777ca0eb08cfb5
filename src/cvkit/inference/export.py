"""Exporting a trained network to ONNX or TorchScript, and checking the export against PyTorch. The input
and outputs of each task's export are its :class:`~cvkit.inference.forms.ExportForm`; the expected input is
also written into the file's metadata (ONNX ``metadata_props``; TorchScript extra file ``cvkit.json``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch
from torch import nn

from cvkit.errors import CvkitError
from cvkit.inference.forms import FORMATS, ExportForm
from cvkit.inference.predictor import Predictor

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def input_description(predictor: Predictor, form: ExportForm) -> dict[str, Any]:
    """What the exported model expects and gives, for its metadata and for the user."""
    described = {
        "task": predictor.kind,
        "class_names": predictor.class_names,
        "channel_order": "RGB",
        "input": form.input_text,
        "outputs": form.output_text,
    }
    if form.batched:
        data = predictor.config["data"]
        described.update(image_size=predictor.image_size, mean=data["mean"], std=data["std"])
    return described


def check_supported(form: ExportForm, export_format: str) -> None:
    """CvkitError when `export_format` is not one cvkit offers for networks of `form`."""
    if export_format not in FORMATS:
        raise CvkitError(f"format={export_format!r} is not one of {list(FORMATS)}")
    if export_format not in form.formats:
        raise CvkitError(f"format={export_format} is not offered {form.not_offered}")


def write_onnx(
    module: nn.Module,
    example: Any,
    path: Path,
    names: tuple[list[str], list[str]],
    axes: dict[str, dict[int, str]],
    opset: int,
    metadata: dict[str, Any] | None = None,
) -> None:
    """`module` traced with `example` as ONNX at `path`: input and output `names`, dynamic `axes`, and
    `metadata` (JSON for values that are not strings) in its ``metadata_props``."""
    with warnings.catch_warnings():  # the tracer's notes on Python values it records as constants
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
        onnx.save(proto, str(path))


def export_onnx(predictor: Predictor, form: ExportForm, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write `predictor`'s network as ONNX to `path`, traced with `example` (a batch, or one image for
    forms that take one), with the form's dynamic axes."""
    names = ([form.input_name], list(form.output_names))
    metadata = input_description(predictor, form)
    write_onnx(form.wrap(predictor.model), example, path, names, form.dynamic_axes, opset, metadata)


def export_torchscript(predictor: Predictor, form: ExportForm, example: torch.Tensor, path: Path) -> None:
    """Write `predictor`'s network as TorchScript (traced with `example`) to `path`."""
    check_supported(form, "torchscript")
    with warnings.catch_warnings():  # the tracer's notes, and torch.jit's deprecation notice
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(form.wrap(predictor.model).eval(), example, check_trace=False)
        extra = {"cvkit.json": json.dumps(input_description(predictor, form))}
        torch.jit.save(traced, str(path), _extra_files=extra)


def as_numpy(outputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
    """One output as an array, several as a tuple of arrays."""
    if isinstance(outputs, torch.Tensor):
        return outputs.numpy()
    return tuple(output.numpy() for output in outputs)


def run_exported(path: Path, export_format: str, inputs: Sequence[torch.Tensor]) -> list[Any]:
    """The exported model's outputs for each of `inputs`, in the form of :func:`as_numpy`."""
    if export_format == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        outputs = [session.run(None, {name: x.numpy()}) for x in inputs]
        return [out[0] if len(out) == 1 else tuple(out) for out in outputs]
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return [as_numpy(module(x)) for x in inputs]


def run_reference(predictor: Predictor, form: ExportForm, inputs: Sequence[torch.Tensor]) -> list[Any]:
    """What the PyTorch network gives for `inputs`, in the form of :func:`run_exported`."""
    module = form.wrap(predictor.model).eval()
    with torch.inference_mode():
        return [as_numpy(module(x)) for x in inputs]
