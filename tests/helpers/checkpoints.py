"""Checkpoints as the tests read them: their contents, and whether two runs ended with the same weights."""

from __future__ import annotations

from pathlib import Path

import torch


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path` on the CPU, read as ``torch.load(weights_only=True)`` reads it (as cvkit does)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def final_checkpoint(run_dir: Path) -> dict:
    """The run's checkpoints/last.ckpt."""
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def assert_same_weights(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    """Both state dicts hold the same tensors: bit for bit, or within `atol` (compared as floats)."""
    assert reference.keys() == other.keys(), sorted(reference.keys() ^ other.keys())[:5]
    if atol:
        different = [k for k in reference if not torch.allclose(reference[k].float(), other[k].float(), atol=atol)]
    else:
        different = [k for k in reference if not torch.equal(reference[k], other[k])]
    assert not different, f"{len(different)} weights differ: {different[:5]}"
