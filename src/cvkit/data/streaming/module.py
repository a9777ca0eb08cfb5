"""``data=streaming``: the data modules of each task that read a dataset from shards (written by ``cvkit-data
convert --to shards``) on local disk or object storage. Each is its task's data module with its splits loaded
from the shards' manifest: the pipelines, batches, sampler and mid-epoch resume are the task's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvkit.data.classification.datasets import FileImages
from cvkit.data.classification.module import ClassificationDataModule, Split
from cvkit.data.detection.module import DetectionDataModule, DetectionRecord
from cvkit.data.instances.module import InstanceSegmentationDataModule
from cvkit.data.segmentation.module import SegmentationDataModule, SegmentationRecord
from cvkit.data.streaming.cache import parse_bytes
from cvkit.data.streaming.manifest import check_files, client_options, read_manifest, require_litdata, split_url
from cvkit.data.streaming.shards import ShardReader, StoredFile, StoredMask
from cvkit.errors import CvkitError


@dataclass
class ShardPlace:
    """Where shards are, and how a node reads them: ``data.root`` (a folder, or a URL such as
    ``s3://bucket/prefix``), and for remote shards ``data.cache_dir``, ``data.cache_size`` (bytes) and
    ``data.storage_options``."""

    root: str
    cache_dir: str | None = None
    cache_size: int | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)


class Shards:
    """The shards of a `task`'s dataset at `place`: their manifest, checked, and a reader per split."""

    def __init__(self, place: ShardPlace, task: str) -> None:
        require_litdata()
        self.root = place.root.removeprefix("file://")  # a local folder given as a URL
        storage_options = client_options(self.root, place.storage_options)
        self.manifest = read_manifest(self.root, storage_options)
        if self.manifest["task"] != task:
            raise CvkitError(
                f"the shards at {self.root} hold {self.manifest['task']} data, and this run is {task}: "
                f"run it with task={self.manifest['task']}, or point data.root at {task} shards"
            )
        self.readers = {}
        for split, content in self.manifest["splits"].items():
            check_files(self.root, split, content["files"])
            self.readers[split] = ShardReader(
                split_url(self.root, split),
                place.cache_dir,
                storage_options,
                sizes=content["files"],
                written=self.manifest["written"],
                cache_size=place.cache_size,
            )

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    def samples(self) -> dict[str, tuple[ShardReader, list[dict[str, Any]]]]:
        """Each split's reader and its samples' annotations."""
        return {split: (self.readers[split], content["samples"]) for split, content in self.manifest["splits"].items()}

    def describe(self) -> str:
        return f"shards at {self.root} ({self.manifest['source']})"


def stored_image(reader: ShardReader, index: int, sample: dict[str, Any]) -> StoredFile:
    return StoredFile(reader, index, "image", sample["name"])


def stored_pair(reader: ShardReader, index: int, sample: dict[str, Any]) -> SegmentationRecord:
    """A segmentation sample: its image and its mask, both in the shards."""
    return SegmentationRecord(
        stored_image(reader, index, sample), StoredMask(StoredFile(reader, index, "mask", sample["name"]))
    )


class StreamingFromShards:
    """What the streaming data modules of every task share: the knobs of the shards' place (:class:`ShardPlace`),
    the shards opened on the first setup."""

    task: str

    def __init__(
        self,
        *,
        root: str,
        cache_dir: str | None = None,
        cache_size: int | str | None = None,
        storage_options: dict[str, Any] | None = None,
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)  # the task's data module
        size = parse_bytes(cache_size, "data.cache_size")
        self.place = ShardPlace(str(root), cache_dir, size, dict(storage_options or {}))
        self.shards: Shards | None = None

    def loaded_shards(self) -> Shards:
        if self.shards is None:
            self.shards = Shards(self.place, self.task)
        return self.shards

    def describe(self) -> str:
        return self.shards.describe() if self.shards else f"shards at {self.place.root}"


class StreamingClassificationDataModule(StreamingFromShards, ClassificationDataModule):
    """Classification from shards: images with one label each."""

    task = "classification"

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        shards = self.loaded_shards()
        splits = {
            name: Split(
                FileImages([stored_image(reader, i, sample) for i, sample in enumerate(samples)]),
                np.array([sample["label"] for sample in samples], dtype=np.int64),
            )
            for name, (reader, samples) in shards.samples().items()
        }
        return splits, shards.class_names


def detection_record(reader: ShardReader, index: int, sample: dict[str, Any]) -> DetectionRecord:
    return DetectionRecord(
        path=stored_image(reader, index, sample),
        image_id=sample["image_id"],
        width=sample["width"],
        height=sample["height"],
        boxes=np.array(sample["boxes"], dtype=np.float64),
        labels=np.array(sample["labels"], dtype=np.int64),
        iscrowd=np.array(sample["iscrowd"], dtype=bool),
        train=np.array(sample["train"], dtype=bool),
        areas=np.array(sample["areas"], dtype=np.float64),
        file_name=sample["file_name"],
        segmentations=sample["segmentations"],
    )


class StreamingDetectionDataModule(StreamingFromShards, DetectionDataModule):
    """Detection from shards: images with their boxes, and the original category ids."""

    task = "detection"

    def load_splits(self) -> tuple[dict[str, list[DetectionRecord]], list[str]]:
        shards = self.loaded_shards()
        self.label_to_category = shards.manifest["label_to_category"]
        splits = {
            name: [detection_record(reader, i, sample) for i, sample in enumerate(samples)]
            for name, (reader, samples) in shards.samples().items()
        }
        return splits, shards.class_names


class StreamingInstanceDataModule(StreamingDetectionDataModule, InstanceSegmentationDataModule):
    """Instance segmentation from shards: detection records whose objects carry their regions."""

    task = "instance_segmentation"


class StreamingSegmentationDataModule(StreamingFromShards, SegmentationDataModule):
    """Semantic segmentation from shards: images with their masks of class indices."""

    task = "segmentation"

    def __init__(self, *, ignore_index: int | None = None, **knobs: Any) -> None:
        # null: the mask value the shards were written with, known once the manifest is read
        super().__init__(ignore_index=0 if ignore_index is None else ignore_index, **knobs)
        self.ignore_given = ignore_index is not None

    def load_splits(self) -> tuple[dict[str, list[SegmentationRecord]], list[str]]:
        shards = self.loaded_shards()
        if not self.ignore_given:
            self.ignore_index = shards.manifest["ignore_index"]
        splits = {
            name: [stored_pair(reader, i, sample) for i, sample in enumerate(samples)]
            for name, (reader, samples) in shards.samples().items()
        }
        return splits, shards.class_names
