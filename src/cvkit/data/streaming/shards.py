"""Reading the samples of shards that LitData's ``optimize()`` wrote (``cvkit-data convert --to shards``), by
their index.

A split's samples are read one at a time, in the order cvkit's own :class:`~cvkit.data.samplers.EpochSampler`
draws them, rather than by LitData's loader and its shuffling: so a run from shards has the batches,
augmentations and mid-epoch resume of a run from the source files (the sampler's position is in every
checkpoint), and every rank its own share. A sample is one read at an offset of its chunk file (each chunk's
table of offsets is read once: :func:`cvkit.compat.litdata_sample_offsets`), decoded by LitData's own
``PyTreeLoader``. LitData's ``StreamingDataset`` is not used to read: it maps a whole chunk, and asks the kernel
to read it ahead, each time the next sample is in another chunk, which in an order over all samples is nearly
every time (``scripts/benchmarks/shard_reads.py``: 105 us a sample with 36 chunks, against 12 us here and 13 us
for reading a file). From object storage (``s3://``, ``gs://``, ...) each chunk is fetched whole into the node's
cache the first time one of its samples is read (:mod:`~cvkit.data.streaming.cache`), and read there.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from cvkit.compat import litdata_sample_offsets
from cvkit.data.images import DECODE_ERRORS, CorruptImageError
from cvkit.data.streaming.cache import ChunkCache
from cvkit.data.streaming.manifest import is_remote
from cvkit.errors import CvkitError

DEFAULT_CACHE = Path.home() / ".cache" / "cvkit" / "shards"
OPEN_CHUNKS = 64  # chunk files each process keeps open (local shards, or a cache nothing is removed from)


@dataclass(eq=False)  # one reader per split, hashed by identity (the files of its samples are hashable)
class ShardReader:
    """The samples of one split's shards at `url` (a folder, or a URL LitData reads), by index. Each process
    opens the chunk files on its first read, so a reader pickles to loader workers as its settings alone."""

    url: str
    cache_dir: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # the bytes of each chunk file, as written
    written: str = ""  # when: shards written again at the same URL get a cache folder of their own
    cache_size: int | None = None  # remote shards: the most bytes of chunks the node's cache holds

    def __post_init__(self) -> None:
        self._chunks: ChunkFiles | None = None
        self._cache: ChunkCache | None = None
        self._last: tuple[int, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        names = ("url", "cache_dir", "storage_options", "sizes", "written", "cache_size")
        return {name: getattr(self, name) for name in names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def sample(self, index: int) -> dict[str, Any]:
        """Sample `index` as written: ``{"index", "image"[, "mask"]}``, the last one read kept (an image and its
        mask are one read). A sample whose stored index is another names the shards as out of step."""
        with self._lock:
            if self._last is not None and self._last[0] == index:
                return self._last[1]
            sample = self.read(index)
            if sample.get("index") != index:
                raise CvkitError(
                    f"shards at {self.url}: position {index} holds sample {sample.get('index')}: the shards and "
                    "cvkit.json beside them do not match; write them again with cvkit-data convert --to shards"
                )
            self._last = (index, sample)
            return sample

    def chunks(self) -> ChunkFiles:
        if self._chunks is None:
            folder = Path(self.url)
            if is_remote(self.url):
                key = hashlib.sha256(f"{self.url} {self.written}".encode()).hexdigest()[:16]
                folder = Path(self.cache_dir or DEFAULT_CACHE) / key
                self._cache = ChunkCache(self.url, folder, dict(self.storage_options), self.sizes, self.cache_size)
            # a chunk file kept open would keep its disk space after the bounded cache removes it
            self._chunks = ChunkFiles(folder, OPEN_CHUNKS if self.cache_size is None else 0)
        return self._chunks

    def read(self, index: int) -> dict[str, Any]:
        chunks = self.chunks()
        number = chunks.number_of(index)
        if self._cache is None:
            return chunks.read(number, index)
        self._cache.use(chunks.names[number])
        try:
            return chunks.read(number, index)
        except MissingChunkError:  # removed from the node's cache since (to make room, or by hand): fetched again
            self._cache.fetch_again(chunks.names[number])
            return chunks.read(number, index)


class MissingChunkError(CvkitError):
    """A chunk file of the shards is not where it was."""


class ChunkFiles:
    """The chunk files of one split in `folder` (LitData's ``index.json`` lists them), each sample read by its
    index; at most `keep_open` files kept open, the least recently used closed first."""

    def __init__(self, folder: Path, keep_open: int) -> None:
        from litdata.streaming.config import ChunksConfig
        from litdata.streaming.item_loader import PyTreeLoader
        from litdata.streaming.serializers import IntegerSerializer, NoHeaderNumpySerializer, NumpySerializer

        index = json.loads((folder / "index.json").read_text())
        config = index["config"]
        kinds = {"int": IntegerSerializer(), "numpy": NumpySerializer(), "no_header_numpy": NoHeaderNumpySerializer()}
        written = {kind.split(":")[0] for kind in config["data_format"]}
        if config.get("compression") or config.get("encryption") or not written <= kinds.keys():
            raise CvkitError(
                f"shards at {folder} were not written by cvkit-data convert (their samples are "
                f"{config['data_format']}, compression {config.get('compression')}): write them again with it"
            )
        self.folder, self.keep_open = folder, keep_open
        self.names = [chunk["filename"] for chunk in index["chunks"]]
        self.starts = list(itertools.accumulate((chunk["chunk_size"] for chunk in index["chunks"]), initial=0))
        self.decoder = PyTreeLoader(batch_decode=False)
        ChunksConfig(str(folder), kinds, None, item_loader=self.decoder)  # sets the decoder up from index.json
        self.open: OrderedDict[int, BinaryIO] = OrderedDict()
        self.offsets: dict[int, np.ndarray] = {}  # each chunk's, read once: a sample is then one read

    def number_of(self, index: int) -> int:
        """The chunk that holds sample `index`."""
        return bisect.bisect_right(self.starts, index) - 1

    def read(self, number: int, index: int) -> dict[str, Any]:
        """Sample `index`, in chunk `number`, decoded."""
        path = self.folder / self.names[number]
        try:
            chunk = self.open.pop(number, None) or open(path, "rb", buffering=0)  # noqa: SIM115 (kept open)
        except FileNotFoundError as err:
            raise MissingChunkError(
                f"shard {path} is missing: copy it again from where the shards were written"
            ) from err
        try:
            if (offsets := self.offsets.get(number)) is None:
                offsets = self.offsets[number] = self.sample_offsets(number, chunk)
            position = index - self.starts[number]
            start, end = int(offsets[position]), int(offsets[position + 1])
            data = os.pread(chunk.fileno(), end - start, start)
            if len(data) != end - start:
                raise EOFError(f"{len(data)} of the {end - start} bytes from {start}")
        except EOFError as err:
            raise CvkitError(
                f"shard {path} ends before sample {index} ({err}): it is cut short; copy it again from where the "
                "shards were written"
            ) from err
        finally:
            self.keep(number, chunk)
        return self.decoder.load_item_from_bytes(data, number)

    def sample_offsets(self, number: int, chunk: BinaryIO) -> np.ndarray:
        """Where each sample of chunk `number` starts, and the last ends; a header that lists another number of
        samples than LitData's index names the shards as out of step."""
        path = self.folder / self.names[number]
        try:
            offsets = litdata_sample_offsets(chunk)
        except ValueError as err:
            raise CvkitError(f"shard {path} is not a chunk LitData wrote ({err}): write the shards again") from err
        listed = self.starts[number + 1] - self.starts[number]
        if len(offsets) != listed + 1:
            raise CvkitError(
                f"shard {path} holds {len(offsets) - 1} samples and index.json lists {listed}: the index does not "
                "match its shards; write them again"
            )
        return offsets

    def keep(self, number: int, chunk: BinaryIO) -> None:
        """Keep `chunk` open as the most recently used, closing the least recently used beyond `keep_open`."""
        self.open[number] = chunk
        while len(self.open) > self.keep_open:
            self.open.popitem(last=False)[1].close()


@dataclass(frozen=True)
class StoredFile:
    """One encoded file kept in a shard (an image, or a mask: `key`), read as a file is: ``read_bytes()``; its
    source file's `name` says which in messages."""

    reader: ShardReader
    index: int
    key: str
    name: str

    def read_bytes(self) -> bytes:
        return bytes(self.reader.sample(self.index)[self.key])  # a uint8 array as written

    def __str__(self) -> str:
        return f"{self.name} (sample {self.index} of {self.reader.url})"


@dataclass(frozen=True)
class StoredMask:
    """A mask kept in a shard as a PNG of class indices: a :class:`~cvkit.data.segmentation.masks.MaskSource`."""

    file: StoredFile

    def read(self) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(self.file.read_bytes())) as image:
                return np.asarray(image)
        except DECODE_ERRORS as err:
            raise CorruptImageError(str(self.file), str(err) or type(err).__name__) from err

    def __str__(self) -> str:
        return str(self.file)
