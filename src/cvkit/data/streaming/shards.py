"""Reading the samples of shards that LitData's ``optimize()`` wrote (``cvkit-data convert --to shards``), by
their index.

A split's samples are read through LitData's ``StreamingDataset`` one at a time, in the order cvkit's own
:class:`~cvkit.data.samplers.EpochSampler` draws them, rather than by LitData's loader and its shuffling: so a
run from shards has the batches, augmentations and mid-epoch resume of a run from the source files (the
sampler's position is in every checkpoint), and every rank its own share. From local disk (or a shared
filesystem) a sample is a read at an offset of its chunk file. From object storage (``s3://``, ``gs://``, ...)
each chunk is fetched whole into the node's cache the first time one of its samples is read
(:mod:`~cvkit.data.streaming.cache`), and read there. LitData's own sample-by-sample path for remote shards
(``on_demand_bytes``) is not used: it would fetch every sample again each epoch, and for samples of raw
``bytes``, which 0.2.76 writes as Arrow record batches, it returns them empty (seen against a local S3 server).
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvkit.data.images import DECODE_ERRORS, CorruptImageError
from cvkit.data.streaming.cache import ChunkCache
from cvkit.data.streaming.manifest import is_remote
from cvkit.errors import CvkitError

DEFAULT_CACHE = Path.home() / ".cache" / "cvkit" / "shards"


@dataclass(eq=False)  # one reader per split, hashed by identity (the files of its samples are hashable)
class ShardReader:
    """The samples of one split's shards at `url` (a folder, or a URL LitData reads), by index. Each process
    opens LitData's dataset on its first read, so a reader pickles to loader workers as its settings alone."""

    url: str
    cache_dir: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # the bytes of each chunk file, as written
    written: str = ""  # when: shards written again at the same URL get a cache folder of their own
    cache_size: int | None = None  # remote shards: the most bytes of chunks the node's cache holds

    def __post_init__(self) -> None:
        self._dataset: Any = None
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

    def dataset(self) -> Any:
        if self._dataset is None:
            from litdata import StreamingDataset

            folder = self.url
            if is_remote(self.url):
                key = hashlib.sha256(f"{self.url} {self.written}".encode()).hexdigest()[:16]
                local = Path(self.cache_dir or DEFAULT_CACHE) / key
                self._cache = ChunkCache(self.url, local, dict(self.storage_options), self.sizes, self.cache_size)
                folder = str(local)
            # batch_decode: LitData would otherwise decode the samples around each one asked for
            self._dataset = StreamingDataset(folder, batch_decode=False)
        return self._dataset

    def read(self, index: int) -> dict[str, Any]:
        dataset = self.dataset()
        if self._cache is not None:
            self._cache.use_chunk_of(index)
        return dataset[index]


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
