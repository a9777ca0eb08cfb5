"""``cvkit.json``, written beside a dataset's shards: what the shards hold (the task, the class names, each
split's samples with their labels, boxes or regions) and the files they were written as, so that a run reads
its annotations in one file and checks the shards before it trains."""

from __future__ import annotations

import io
import json
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
    return "://" in url and not url.startswith("file://")


def split_url(root: str, split: str) -> str:
    return f"{root.rstrip('/')}/{split}"


def read_manifest(root: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the shards at `root` (a folder or a URL), checked to be one cvkit wrote."""
    where = f"{root.rstrip('/')}/{MANIFEST}"
    if is_remote(root):
        text = fetch_text(where, storage_options)
    else:
        path = Path(root.removeprefix("file://")) / MANIFEST
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


def download(url: str, path: Path, storage_options: dict[str, Any]) -> None:
    """The object at `url` written to `path` whole or not at all."""
    partial = path.with_name(f"{path.name}.partial")
    with open(partial, "wb") as file:
        fetch_into(url, file, storage_options)
    partial.replace(path)


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
    """Write `manifest` into `folder` whole or not at all (it marks the shards as finished)."""
    manifest = {"format": FORMAT, "version": VERSION, **manifest}
    partial = folder / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest))
    partial.replace(folder / MANIFEST)


def check_files(root: str, split: str, files: dict[str, int]) -> None:
    """On local disk: each shard file of `split` is there at the size it was written (`files`: name -> bytes),
    and LitData's index lists the same files; named in one line where not."""
    if is_remote(root):
        return  # a missing or cut object is named when it is read
    folder = Path(root.removeprefix("file://")) / split
    index = folder / "index.json"
    try:
        listed = {chunk["filename"] for chunk in json.loads(index.read_text())["chunks"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CvkitError(f"shards at {folder}: cannot read LitData's index {index} ({err}): write them again") from err
    if listed != set(files):
        raise CvkitError(
            f"shards at {folder}: {index.name} lists {len(listed)} files and {MANIFEST} {len(files)} "
            f"({sorted(listed ^ set(files))[:3]} in one only): the index does not match its shards; write them again"
        )
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            raise CvkitError(f"shard {path} is missing: copy it again from where the shards were written")
        if (actual := path.stat().st_size) != size:
            raise CvkitError(
                f"shard {path} has {actual} bytes, {size} were written: it is cut short or changed; copy it again"
            )
