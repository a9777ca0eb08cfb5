"""COCO instance segmentation data: an image folder and a COCO instances JSON per split, a polygon or RLE
region for every object."""

from __future__ import annotations

from typing import Any

from cvkit.data.detection.coco import CocoDetectionDataModule
from cvkit.data.formats.coco import CocoImage, Segmentation, check_segmentation
from cvkit.data.instances.module import InstanceSegmentationDataModule


class CocoInstanceDataModule(CocoDetectionDataModule, InstanceSegmentationDataModule):
    """Instance segmentation data in COCO format: the files, category ids, crowd annotations and images
    without objects of :class:`~cvkit.data.detection.coco.CocoDetectionDataModule`, and each annotation's
    ``segmentation``: polygons (at least 3 points, inside the image), or an RLE (uncompressed or compressed)
    of the image's size; crowd regions are RLEs as a rule. An annotation without one is refused, naming it.
    """

    def __init__(self, **files_and_common: Any) -> None:
        super().__init__(**files_and_common)
        self.name = f"coco_instances {self.paths['train'][1]}"

    def describe(self) -> str:
        return f"COCO instance segmentation data ({self.paths['train'][1]})"

    def _segmentations(self, annotations: list[dict[str, Any]], image: CocoImage, split: str) -> list[Segmentation]:
        height, width = image.size
        for entry in annotations:
            where = (
                f"data.{split}_annotations: {self.paths[split][1]} annotation {entry.get('id', '?')} of image "
                f"{image.id} ({image.entry['file_name']})"
            )
            check_segmentation(
                entry.get("segmentation"),
                height,
                width,
                where,
                "task=instance_segmentation",
                "task=detection data=coco",
            )
        return [entry["segmentation"] for entry in annotations]
