"""Writing a dataset cvkit reads (any data module of any task) as shards: LitData's ``optimize()`` writes each
split's encoded images (and masks) into chunk files, in parallel and with a progress bar, resumable when cut
short; :mod:`~cvkit.data.streaming.manifest` records the annotations beside them. LitData is the format: it
is Lightning's own, keeps its index in one JSON file, reads local folders and object storage alike, and reads
a sample by its index, which cvkit's sampler needs (:mod:`~cvkit.data.streaming.shards`).
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvkit.data.base import BaseDataModule
from cvkit.data.classification.datasets import FileImages, ImageSource, SubsetImages
from cvkit.data.classification.module import ClassificationDataModule, Split
from cvkit.data.detection.module import DetectionDataModule, DetectionRecord
from cvkit.data.instances.module import InstanceSegmentationDataModule
from cvkit.data.segmentation.masks import read_mask
from cvkit.data.segmentation.module import SegmentationDataModule, SegmentationRecord
from cvkit.data.streaming.manifest import MANIFEST, index_chunks, require_litdata, write_manifest
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)


def task_of(datamodule: BaseDataModule) -> str:
    """The task a data module's samples are for, as the manifest names it."""
    for kind, name in (
        (InstanceSegmentationDataModule, "instance_segmentation"),
        (DetectionDataModule, "detection"),
        (SegmentationDataModule, "segmentation"),
        (ClassificationDataModule, "classification"),
    ):
        if isinstance(datamodule, kind):
            return name
    raise CvkitError(f"cvkit-data cannot write {type(datamodule).__name__} as shards: it is no task's data module")


def image_bytes(images: ImageSource, index: int) -> bytes:
    """Image `index` of `images` encoded: its file's own bytes, or a PNG of an image held in memory."""
    while isinstance(images, SubsetImages):
        images, index = images.source, images.indices[index]
    if isinstance(images, FileImages):
        return Path(images.paths[index]).read_bytes()
    return png(images[index][:, :, ::-1])  # OpenCV writes BGR


def png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise CvkitError(f"cannot encode an array of {array.dtype} {array.shape} as PNG")
    return encoded.tobytes()


def stored(data: bytes) -> np.ndarray:
    """Encoded bytes as LitData is to keep them: as a uint8 array, which it writes with a table of where each
    sample starts, so that one sample is one read (raw ``bytes`` go into Arrow record batches, which LitData
    0.2.76 decodes whole for each sample read: 7x slower by index, measured)."""
    return np.frombuffer(data, dtype=np.uint8)


def classification_sample(split: Split, index: int) -> dict[str, Any]:
    return {"index": index, "image": stored(image_bytes(split.images, index))}


def detection_sample(records: list[DetectionRecord], index: int) -> dict[str, Any]:
    return {"index": index, "image": stored(Path(records[index].path).read_bytes())}


def segmentation_sample(records: list[SegmentationRecord], index: int) -> dict[str, Any]:
    mask = read_mask(records[index].mask)
    if mask.dtype not in (np.uint8, np.uint16):
        raise CvkitError(f"mask {records[index].mask} has values outside 0..65535: shards keep masks as PNGs")
    image = Path(records[index].image).read_bytes()
    return {"index": index, "image": stored(image), "mask": stored(png(mask))}


def label_annotations(split: Split) -> list[dict[str, Any]]:
    return [{"name": split.images.describe(i), "label": int(label)} for i, label in enumerate(split.labels)]


def mask_annotations(records: list[SegmentationRecord]) -> list[dict[str, Any]]:
    return [{"name": str(record.image)} for record in records]


def box_annotations(records: list[DetectionRecord]) -> list[dict[str, Any]]:
    return [
        {
            "name": str(record.path),
            "file_name": record.file_name,
            "image_id": record.image_id,
            "width": record.width,
            "height": record.height,
            "boxes": record.boxes.tolist(),
            "labels": record.labels.tolist(),
            "iscrowd": record.iscrowd.tolist(),
            "train": record.train.tolist(),
            "areas": np.asarray(record.areas).tolist(),
            "segmentations": record.segmentations,
        }
        for record in records
    ]


SampleWriter = Callable[[Any, int], dict[str, Any]]
# Per task: what a shard's sample holds (written in LitData's workers), and what the manifest keeps of each sample
# (its name, and its label, or its image's boxes and regions).
WRITERS: dict[str, tuple[SampleWriter, Callable[[Any], list[dict[str, Any]]]]] = {
    "classification": (classification_sample, label_annotations),
    "detection": (detection_sample, box_annotations),
    "instance_segmentation": (detection_sample, box_annotations),
    "segmentation": (segmentation_sample, mask_annotations),
}


def convert_to_shards(datamodule: BaseDataModule, out: Path, workers: int, chunk_bytes: str) -> dict[str, int]:
    """Write the set-up `datamodule`'s splits as shards under `out` (``out/<split>/``, and ``out/cvkit.json``
    once every split is written); returns the samples of each split. A run cut short is continued by the same
    command: finished splits are kept, LitData's checkpoints continue the one in progress."""
    require_litdata()
    task = task_of(datamodule)
    if (out / MANIFEST).exists():
        raise CvkitError(f"{out} already holds finished shards ({MANIFEST}): choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    splits: dict[str, Any] = {}
    sample, annotations = WRITERS[task]
    for name in datamodule.split_sizes():
        split = datamodule.splits[name]
        write_split(split, sample, out / name, workers, chunk_bytes)
        names = [chunk["filename"] for chunk in index_chunks(out / name)]  # not a glob: a cut write may leave others
        files = {file: (out / name / file).stat().st_size for file in names}
        splits[name] = {"samples": annotations(split), "files": files}
    manifest = {
        "task": task,
        "source": datamodule.describe(),
        "class_names": datamodule.class_names,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "splits": splits,
    }
    if isinstance(datamodule, DetectionDataModule):
        manifest["label_to_category"] = datamodule.label_to_category
    if isinstance(datamodule, SegmentationDataModule):
        manifest["ignore_index"] = datamodule.ignore_index
    write_manifest(out, manifest)
    return {name: len(split["samples"]) for name, split in splits.items()}


def write_split(split: Any, writer: SampleWriter, folder: Path, workers: int, chunk_bytes: str) -> None:
    """LitData's ``optimize()`` over the samples of `split`, in their order (the sample at position i is
    sample i), unless `folder` holds them all already."""
    from litdata import optimize

    if written_samples(folder) == len(split):
        log.info("%s: %d samples written before, kept", folder, len(split))
        return
    if (folder / "index.json").exists():  # a finished write of other samples: not ours to continue
        shutil.rmtree(folder)
    optimize(
        fn=functools.partial(writer, split),
        inputs=list(range(len(split))),
        output_dir=str(folder),
        chunk_bytes=chunk_bytes,
        num_workers=max(1, min(workers, len(split))),
        keep_data_ordered=True,
        reorder_files=False,
        use_checkpoint=True,
        start_method="fork",  # spawned workers would each import torch again (seconds per split)
    )


def written_samples(folder: Path) -> int | None:
    """The samples LitData's index in `folder` lists (None: no finished index there)."""
    try:
        return sum(chunk["chunk_size"] for chunk in index_chunks(folder))
    except (OSError, ValueError, KeyError, TypeError):
        return None
