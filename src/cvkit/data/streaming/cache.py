"""The node's cache of remote shards: each chunk fetched whole the first time one of its samples is read, kept
for later reads and epochs, at most ``data.cache_size`` bytes of chunks (the least recently used go first).

Every process of the node (the ranks and their loader workers) shares one cache folder per split; a lock file
makes one of them fetch a chunk and make room for it while the others wait. A process that finds a chunk gone
(another made room by removing it) fetches it again.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from cvkit.data.streaming.manifest import check_index, download, index_chunks
from cvkit.errors import CvkitError

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_bytes(value: int | str | None, key: str) -> int | None:
    """A size given as bytes or as "50GB" (KB, MB, GB, TB: powers of 1000); None stays None."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*", str(value), flags=re.IGNORECASE)
    if found is None or float(found[1]) <= 0:
        raise CvkitError(f"{key}={value!r} is not a size: give bytes, or a number with KB, MB, GB or TB (e.g. 50GB)")
    return int(float(found[1]) * UNITS[found[2].upper()])


class ChunkCache:
    """The chunks of the remote split at `url`, in `folder`, at most `limit` bytes of them (None: no limit, at
    most one copy of the split). `sizes` are the chunk files' sizes as written (from the manifest)."""

    def __init__(
        self, url: str, folder: Path, storage_options: dict[str, Any], sizes: dict[str, int], limit: int | None
    ) -> None:
        self.url, self.folder, self.storage_options, self.sizes, self.limit = url, folder, storage_options, sizes, limit
        if limit is not None and sizes and limit < max(sizes.values()):
            raise CvkitError(
                f"data.cache_size={limit} bytes cannot hold the largest chunk of {url} ({max(sizes.values())} "
                "bytes): raise it, or write the shards with a smaller --chunk-bytes"
            )
        self.in_use: str | None = None
        self.present: set[str] = set()
        self.fetch("index.json")
        check_index(url, [chunk["filename"] for chunk in index_chunks(folder)], sizes)

    def use(self, name: str) -> None:
        """Have chunk `name` in the cache for a read, marked as the most recently used (so that making room for
        another process's chunk does not remove it)."""
        if self.limit is None:  # nothing is ever removed: a chunk found here once stays
            if name not in self.present:
                self.fetch(name)
                self.present.add(name)
            return
        path = self.folder / name
        if name != self.in_use and path.exists():
            with contextlib.suppress(FileNotFoundError):  # removed since: fetched again below
                os.utime(path)  # its last use, for making room
        self.in_use = name
        self.fetch(name)

    def fetch_again(self, name: str) -> None:
        """Fetch chunk `name` again, unless another process of the node has: it was removed since it was used."""
        self.present.discard(name)
        self.use(name)

    def fetch(self, name: str) -> None:
        """Download object `name` of the split unless the cache has it (one process of the node does)."""
        path = self.folder / name
        if path.exists():
            return
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(self.folder / ".lock"):
            if path.exists():
                return
            self.make_room(self.sizes.get(name, 0))
            download(f"{self.url}/{name}", path, self.storage_options, self.sizes.get(name))

    def make_room(self, needed: int) -> None:
        """Remove the least recently used chunks until `needed` more bytes fit in the limit."""
        if self.limit is None:
            return
        chunks = []
        for path in self.folder.glob("*.bin"):
            try:
                chunks.append((path.stat().st_mtime, path.stat().st_size, path))
            except FileNotFoundError:
                continue
        total = sum(size for _, size, _ in chunks)
        for _, size, path in sorted(chunks):
            if total + needed <= self.limit:
                break
            path.unlink(missing_ok=True)
            total -= size
