"""``cvkit.json``, written beside a dataset's shards: what the shards hold (the task, the class names, each
split's samples with their labels, boxes or regions) and the files they were written as, so that a run reads
its annotations in one file and checks the shards before it trains."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from cvkit.errors import CvkitError

MANIFEST = "cvkit.json"
FORMAT = "cvkit shards"
VERSION = 1
S3_TRIES = 3  # each request to S3 (LitData's own client would retry 1000 times)


def require_litdata() -> None:
    """CvkitError saying how to install LitData, where it is not."""
    try:
        import litdata  # noqa: F401
    except ImportError as err:
        raise CvkitError(
            "data=streaming and cvkit-data convert --to shards need LitData: pip install 'cvkit-lightning[streaming]'"
        ) from err


def is_remote(url: str) -> bool:
    return "://" in url


def index_chunks(folder: Path) -> list[dict[str, Any]]:
    """The chunks LitData's index in `folder` lists, in order: each with its ``filename`` and ``chunk_size``
    (samples)."""
    return json.loads((folder / "index.json").read_text())["chunks"]


def split_url(root: str, split: str) -> str:
    return f"{root.rstrip('/')}/{split}"


def read_manifest(root: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the shards at `root` (a folder or a URL), checked to be one cvkit wrote."""
    where = f"{root.rstrip('/')}/{MANIFEST}"
    if is_remote(root):
        text = fetch_text(where, storage_options)
    else:
        path = Path(root) / MANIFEST
        if not path.is_file():
            found = "the folder does not exist" if not path.parent.is_dir() else f"it has no {MANIFEST}"
            raise CvkitError(
                f"data.root={root} holds no cvkit shards ({found}): write them with "
                "cvkit-data convert <data overrides> --to shards --out <folder>"
            )
        text = path.read_text()
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise CvkitError(f"{where} is not valid JSON ({err}): write the shards again") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CvkitError(f"{where} is not a cvkit shards manifest of version {VERSION}: write the shards again")
    return manifest


def fetch_text(url: str, storage_options: dict[str, Any]) -> str:
    """The text of the object at `url`."""
    buffer = io.BytesIO()
    fetch_into(url, buffer, storage_options)
    return buffer.getvalue().decode()


def download(url: str, path: Path, storage_options: dict[str, Any], size: int | None = None) -> None:
    """The object at `url` written to `path` whole or not at all; where its `size` is known, a download of another
    size is refused naming `url` (and never appears at `path`)."""
    partial = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as file:
            fetch_into(url, file, storage_options)
        if size is not None and (fetched := partial.stat().st_size) != size:
            raise CvkitError(
                f"shard {url} has {fetched} bytes, {size} were written: it is cut short or changed; upload it again"
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def fetch_into(url: str, file: Any, storage_options: dict[str, Any]) -> None:
    """Write the object at `url` into `file`, by LitData's downloader for its scheme (by its
    ``download_fileobj``: its ``download_file`` would start obstore's runtime in this process, which forked
    loader workers inherit), naming `url` in one line when it cannot."""
    from litdata.streaming.downloader import get_downloader

    with tempfile.TemporaryDirectory() as unused:  # the downloader's cache folder, which this does not use
        try:
            get_downloader(url.rsplit("/", 1)[0], unused, [], dict(storage_options)).download_fileobj(url, file)
        except Exception as err:  # each storage client raises its own kinds; the first line says what failed
            said = str(err).strip().splitlines()[0] if str(err).strip() else ""
            tries = f" ({S3_TRIES} tries)" if url.startswith("s3://") else ""
            raise CvkitError(f"cannot read {url}{tries}: {type(err).__name__}: {said}") from err


def client_options(root: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """`storage_options` for the client of `root`: for ``s3://``, at most 3 tries of each request and a 20 s
    connection timeout unless the user's own ``config`` says otherwise (LitData's client retries 1000 times,
    so an unreachable server would look like a hang)."""
    options = dict(storage_options or {})
    if root.startswith("s3://") and "config" not in options:
        import botocore.config

        options["config"] = botocore.config.Config(
            retries={"max_attempts": S3_TRIES, "mode": "standard"}, connect_timeout=20, read_timeout=60
        )
    return options


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` into `folder` whole or not at all (it marks the shards as finished). Compact JSON, not
    :func:`cvkit.console.write_json`'s indented one: a large detection set's manifest lists every box."""
    manifest = {"format": FORMAT, "version": VERSION, **manifest}
    partial = folder / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest))
    partial.replace(folder / MANIFEST)


def check_files(root: str, split: str, files: dict[str, int]) -> None:
    """On local disk: each shard file of `split` is there at the size it was written (`files`: name -> bytes),
    and LitData's index lists the same files; named in one line where not. (Remote shards are checked as each
    chunk is fetched, and their index against `files` when it is: :mod:`~cvkit.data.streaming.cache`.)"""
    if is_remote(root):
        return
    folder = Path(root) / split
    try:
        listed = [chunk["filename"] for chunk in index_chunks(folder)]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CvkitError(f"shards at {folder}: cannot read LitData's index.json ({err}): write them again") from err
    check_index(str(folder), listed, files)
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            raise CvkitError(f"shard {path} is missing: copy it again from where the shards were written")
        if (actual := path.stat().st_size) != size:
            raise CvkitError(
                f"shard {path} has {actual} bytes, {size} were written: it is cut short or changed; copy it again"
            )


def check_index(where: str, listed: list[str], files: dict[str, int]) -> None:
    """CvkitError unless LitData's index at `where` lists the chunk files of the manifest (`files`)."""
    if set(listed) != set(files):
        raise CvkitError(
            f"shards at {where}: index.json lists {len(listed)} files and {MANIFEST} {len(files)} "
            f"({sorted(set(listed) ^ set(files))[:3]} in one only): the index does not match its shards; "
            "write them again"
        )
