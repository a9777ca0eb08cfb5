"""Every use of a dependency's private API or internal layout, in one place. Upgrading Lightning, torch,
transformers, LitData or albumentations means reading this file; ``tests/test_compat.py`` fails naming the
upstream symbol (or layout) when one of these goes away, and ``pyproject.toml`` bounds each of these libraries
below its next minor (transformers: major) release.

Each function says what it reaches into and why no public API does the job.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    import pytorch_lightning as pl

# The upstream names used below, as (module, attribute path): tests/test_compat.py checks each one exists.
PRIVATE_NAMES = (
    ("pytorch_lightning.strategies.launchers.subprocess_script", "_hydra_subprocess_cmd"),
    ("pytorch_lightning.strategies.launchers.subprocess_script", "_SubprocessScriptLauncher"),
    ("torch", "UntypedStorage._new_shared"),
    ("torch.utils.data.dataloader", "_MultiProcessingDataLoaderIter._shutdown_workers"),
)


def use_job_command_for_ddp_children(command: Callable[[int], tuple[Sequence[str], str]]) -> None:
    """Make Lightning start the DDP child processes of a Hydra job with `command(local_rank)` -> (argv, cwd).

    Lightning's subprocess launcher builds that command with its private ``_hydra_subprocess_cmd``, which
    re-runs ``sys.argv`` with ``hydra.run.dir`` set to the run-dir *pattern*: in a ``-m`` sweep every child
    would start a sweep of its own, in other folders. It has no setting for this, so cvkit replaces it.
    """
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = command


def start_ranks_now(trainer: pl.Trainer) -> None:
    """Start the DDP processes of `trainer` (one-node runs: rank 0 starts the others, which re-run the command)
    and their process group now, before ``fit``, so that the ranks can agree on something the run is built
    from (the searched batch size). Lightning starts them inside ``fit`` only.

    ``launch`` and ``setup_environment`` are public methods, documented for this use ("Creates new processes,
    then calls the given function"; "Setup any processes or distributed connections"); what is Lightning's own
    is the launcher class that supports it, and that ``fit`` later finds both done and does neither again (the
    children are started once: the environment then says that the processes exist; the process group is not
    initialised twice). Launchers that run ``fit`` in new processes (``ddp_spawn``, ``ddp_notebook``) cannot
    do this: refused by the caller, which names them.
    """
    trainer.strategy.launcher.launch(trainer.strategy.setup_environment)


def launches_by_script(trainer: pl.Trainer) -> bool:
    """Whether `trainer`'s processes are started by running the command again (DDP's default, torchrun, srun),
    which :func:`start_ranks_now` needs, rather than by forking or spawning ``fit``. The launcher's class is
    Lightning's private ``_SubprocessScriptLauncher``."""
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    return isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher)


def shared_float_storage_tensor(shape: Sequence[int]) -> torch.Tensor:
    """An empty float32 tensor of `shape` in shared memory, as ``default_collate`` allocates a batch inside a
    loader worker, so that handing it to the main process copies it no further (at 224 px, 1.25x the images a
    second of a copy made in ordinary memory). torch has no public constructor for a shared storage of a
    given size (``Tensor.share_memory_`` copies an existing one); ``default_collate`` uses this one."""
    storage = torch.UntypedStorage._new_shared(int(torch.Size(shape).numel()) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage).view(*shape)


def shutdown_loader_workers(loader: DataLoader) -> None:
    """Shut down the persistent worker processes of `loader` through their queues, as the loader does when it
    is garbage collected. ``DataLoader`` has no public ``close``; Lightning's own teardown calls this too
    (``CombinedLoader.reset``)."""
    iterator = getattr(loader, "_iterator", None)  # the workers' iterator, kept by persistent_workers
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def litdata_sample_offsets(chunk: BinaryIO) -> np.ndarray:
    """Where the samples of a LitData chunk file start, from its header: one offset per sample from the file's
    start, and one more where the last one ends. The layout is LitData's PyTree chunk format
    (``PyTreeLoader.load_item_from_chunk`` describes it): a uint32 count, then those uint32 offsets. LitData has no
    public way to read one sample by its offsets; its own reader maps the whole chunk (and asks the kernel to read
    all of it ahead) whenever the next sample is in another chunk than the last: built for its chunk-by-chunk
    order, it costs about 100 us a sample in cvkit's order over all samples. Raises EOFError for a file cut short
    and ValueError for a table that is not LitData's; ``tests/test_compat.py`` checks the layout against
    LitData's own reading of every sample."""
    size = os.fstat(chunk.fileno()).st_size
    header = os.pread(chunk.fileno(), 4, 0)
    count = struct.unpack("<I", header)[0] if len(header) == 4 else 0
    if len(header) != 4 or 4 * (count + 2) > size:
        raise EOFError(f"its header is cut short ({size} bytes)")
    offsets = np.frombuffer(os.pread(chunk.fileno(), 4 * (count + 1), 4), dtype="<u4")
    if offsets[0] != 4 * (count + 2) or (np.diff(offsets.astype(np.int64)) < 0).any():
        raise ValueError("its table of where samples start is not LitData's")
    if offsets[-1] > size:
        raise EOFError(f"it has {size} bytes and its samples end at byte {offsets[-1]}")
    return offsets


def use_detr_backbone(network: nn.Module, backbone: nn.Module, hidden: int) -> nn.Module:
    """Give a ``transformers`` RT-DETR v2 or D-FINE model (``*ForObjectDetection``) `backbone` in place of the
    one its config built: a module with ``intermediate_channel_sizes`` whose ``forward(pixel_values,
    pixel_mask)`` gives ``(map, mask)`` per level, as the library's ``*ConvEncoder`` does. transformers builds
    backbones only from configs (``load_backbone``), which cannot hold cvkit's levels (a ViT's simple pyramid,
    resized Inception maps); the model's ``__init__`` sizes its ``encoder_input_proj`` from the backbone's
    channels, so it is rebuilt here as ``__init__`` builds it (a 1x1 convolution without bias, BatchNorm).
    Public attributes, but the library's internal layout: ``tests/test_compat.py`` checks it."""
    model = network.model
    if not (hasattr(model, "backbone") and isinstance(getattr(model, "encoder_input_proj", None), nn.ModuleList)):
        raise RuntimeError("transformers' DETR model no longer has model.backbone and model.encoder_input_proj")
    model.backbone = backbone
    model.encoder_input_proj = nn.ModuleList(
        nn.Sequential(nn.Conv2d(channels, hidden, kernel_size=1, bias=False), nn.BatchNorm2d(hidden))
        for channels in backbone.intermediate_channel_sizes
    )
    return network


def detr_denoising_embedding(network: nn.Module) -> nn.Embedding | None:
    """The class embedding of a ``transformers`` RT-DETR v2 / D-FINE model's denoising queries
    (``model.denoising_class_embed``), which only a batch with boxes uses; None when denoising is off."""
    if network.config.num_denoising <= 0:
        return None
    if not isinstance(embedding := getattr(network.model, "denoising_class_embed", None), nn.Embedding):
        raise RuntimeError("transformers' DETR model no longer has model.denoising_class_embed")
    return embedding
