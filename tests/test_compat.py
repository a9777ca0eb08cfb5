"""The private APIs of dependencies that src/cvkit/compat.py uses: each one still there (a failure names the
upstream symbol that went away), and doing what cvkit relies on."""

from __future__ import annotations

import functools
import importlib
import re
import time

import pytest
import torch
from torch.utils.data import DataLoader

from cvkit import compat


@pytest.mark.parametrize(("module", "name"), compat.PRIVATE_NAMES, ids=[f"{m}.{n}" for m, n in compat.PRIVATE_NAMES])
def test_each_private_name_is_still_upstream(module: str, name: str) -> None:
    found = importlib.import_module(module)
    for part in name.split("."):
        assert hasattr(found, part), (
            f"{module}.{name} is gone: src/cvkit/compat.py uses it; upgrade that function (and the bound in "
            "pyproject.toml) before this release"
        )
        found = getattr(found, part)


def test_the_compat_module_lists_every_private_name_it_uses() -> None:
    # Every `x._name` or `import _name` in compat.py is one of PRIVATE_NAMES (so the test above covers it).
    source = compat.__loader__.get_source(compat.__name__)
    listed = {name.rsplit(".", 1)[-1] for _, name in compat.PRIVATE_NAMES}
    used = {f"_{name}" for name in re.findall(r"[.\s]_([A-Za-z]\w*)", source)}  # `x._name`, `import _name`
    assert used - {"_iterator"} <= listed, used - listed  # DataLoader._iterator: an instance's (tested below)


def test_a_shared_float_tensor_is_in_shared_memory() -> None:
    tensor = compat.shared_float_storage_tensor([2, 3, 4])
    assert tensor.shape == (2, 3, 4) and tensor.dtype == torch.float32 and tensor.is_shared()


def worker_pid(_: int) -> int:
    import os

    return os.getpid()


def test_shutting_down_a_loaders_workers_ends_them() -> None:
    loader = DataLoader(list(range(4)), batch_size=1, num_workers=1, persistent_workers=True, collate_fn=worker_pid)
    assert len(list(loader)) == 4
    workers = loader._iterator._workers  # torch keeps the worker processes there
    assert all(worker.is_alive() for worker in workers)
    compat.shutdown_loader_workers(loader)
    deadline = time.monotonic() + 10
    while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(worker.is_alive() for worker in workers)


def test_the_ddp_child_command_is_replaced() -> None:
    from pytorch_lightning.strategies.launchers import subprocess_script

    before = subprocess_script._hydra_subprocess_cmd
    command = functools.partial(lambda rank: ([str(rank)], "."))
    try:
        compat.use_job_command_for_ddp_children(command)
        assert subprocess_script._hydra_subprocess_cmd is command  # what Lightning's launcher calls
    finally:
        subprocess_script._hydra_subprocess_cmd = before


def litdata_sample(index: int) -> dict:
    import numpy as np

    return {"index": index, "image": np.arange(index * 37 % 500 + 1, dtype=np.uint8)}  # sizes vary


def test_each_sample_read_at_its_offsets_is_the_one_litdata_reads(tmp_path) -> None:
    """The chunk layout :func:`cvkit.compat.litdata_sample_offsets` reads (through cvkit's shard reader): every
    sample of three chunks, in an order over all of them, equal to LitData's own reading of it."""
    litdata = pytest.importorskip("litdata", reason="the streaming extra (LitData) is not installed")
    import numpy as np

    from cvkit.data.streaming.shards import ChunkFiles

    folder = tmp_path / "shards"
    litdata.optimize(
        fn=litdata_sample, inputs=list(range(300)), output_dir=str(folder), chunk_bytes="30KB", num_workers=1
    )
    chunks, reference = ChunkFiles(folder, keep_open=2), litdata.StreamingDataset(str(folder))
    assert len(chunks.names) >= 3 and chunks.starts[-1] == len(reference) == 300
    for index in np.random.default_rng(0).permutation(300).tolist():
        ours, theirs = chunks.read(chunks.number_of(index), index), reference[index]
        assert ours["index"] == theirs["index"] == index
        assert np.array_equal(ours["image"], theirs["image"]) and len(ours["image"]) == index * 37 % 500 + 1
    assert len(chunks.open) == 2  # the least recently used files were closed
