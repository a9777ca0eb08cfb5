"""What cvkit-predict leaves in its output folder, per task."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cvkit.inference.predictor import ClassScores, Detections, SegmentationMask
from cvkit.metrics.detection import encode_masks
from cvkit.visualize import class_palette, draw_detections, mask_overlay


class PredictionWriter:
    """Collects the results of one prediction run in `output` (one subclass per task, named by the task table
    :mod:`cvkit.inference.kinds`). Of each image :meth:`add` takes its path
    relative to the input folder (`name`, kept as the outputs' relative path), its original (height,
    width), its decoded RGB pixels when drawing (else None) and its result."""

    def __init__(self, output: Path, class_names: list[str], draw: bool) -> None:
        self.output = output
        self.class_names = class_names
        self.draw = draw

    def add(self, name: Path, size: tuple[int, int], image: np.ndarray | None, result: Any) -> None:
        raise NotImplementedError

    def close(self) -> dict[str, Path]:
        """Write what is left; returns the outputs by what they hold."""
        raise NotImplementedError

    def save_picture(self, folder: str, name: Path, picture: torch.Tensor) -> None:
        """A uint8 CHW picture as ``output/folder/<name>.jpg``."""
        path = (self.output / folder / name).with_suffix(".jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture.permute(1, 2, 0).numpy()).save(path, quality=90)


class ClassificationWriter(PredictionWriter):
    """``predictions.csv`` (a row per image: file, then label and score of each of the top-k classes) and
    ``predictions.json`` (the same as a list of records)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, Any]] = []

    def add(self, name: Path, size: tuple[int, int], image: np.ndarray | None, result: ClassScores) -> None:
        self.rows.append({"file": str(name), "labels": result.labels, "scores": result.scores})

    def close(self) -> dict[str, Path]:
        top_k = max((len(row["labels"]) for row in self.rows), default=0)
        header = ["file"] + [f"{field}_{rank}" for rank in range(1, top_k + 1) for field in ("label", "score")]
        with open(self.output / "predictions.csv", "w", newline="") as stream:
            table = csv.writer(stream)
            table.writerow(header)
            for row in self.rows:
                pairs = [v for label, score in zip(row["labels"], row["scores"]) for v in (label, f"{score:.6f}")]
                table.writerow([row["file"], *pairs])
        (self.output / "predictions.json").write_text(json.dumps(self.rows, indent=1))
        return {"table": self.output / "predictions.csv", "records": self.output / "predictions.json"}


class DetectionWriter(PredictionWriter):
    """``predictions.json`` in COCO results format (image_id, category_id = class index + 1, bbox [x, y, w, h],
    score, and for instance segmentation the mask as a compressed RLE ``segmentation``), ``images.json`` with
    the COCO ``images`` (id, file_name, width, height) and ``categories`` they refer to, and with drawing the
    images with their boxes (and masks) under ``drawn/``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []

    def add(self, name: Path, size: tuple[int, int], image: np.ndarray | None, result: Detections) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": str(name), "height": size[0], "width": size[1]})
        regions = encode_masks(result.masks) if result.masks is not None else [None] * len(result.scores)
        for (x0, y0, x1, y1), score, class_id, region in zip(
            result.boxes.tolist(), result.scores, result.class_ids, regions, strict=True
        ):
            bbox = [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)]
            entry = {"image_id": image_id, "category_id": int(class_id) + 1, "bbox": bbox, "score": float(score)}
            self.results.append({**entry, "segmentation": region} if region is not None else entry)
        if image is not None:
            found = {
                "boxes": torch.from_numpy(result.boxes),
                "labels": torch.from_numpy(result.class_ids + 1),
                "scores": torch.from_numpy(result.scores),
                **({"masks": torch.from_numpy(result.masks[:, None]).float()} if result.masks is not None else {}),
            }
            picture = torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()
            self.save_picture("drawn", name, draw_detections(picture, found, self.class_names))

    def close(self) -> dict[str, Path]:
        categories = [{"id": index, "name": name} for index, name in enumerate(self.class_names, 1)]
        (self.output / "predictions.json").write_text(json.dumps(self.results))
        (self.output / "images.json").write_text(json.dumps({"images": self.images, "categories": categories}))
        written = {"detections": self.output / "predictions.json", "images": self.output / "images.json"}
        return {**written, "drawn": self.output / "drawn"} if self.draw else written


class SegmentationWriter(PredictionWriter):
    """``masks/<name>.png``: each image's class indices at its original size (8-bit, or 16-bit for more
    than 256 classes); with drawing ``overlays/<name>.jpg``: the classes' colours over the image."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.palette = class_palette(len(self.class_names))

    def add(self, name: Path, size: tuple[int, int], image: np.ndarray | None, result: SegmentationMask) -> None:
        path = (self.output / "masks" / name).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        dtype = np.uint8 if len(self.class_names) <= 256 else np.uint16
        Image.fromarray(result.mask.astype(dtype)).save(path)
        if image is not None:
            photo = torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()
            self.save_picture("overlays", name, mask_overlay(photo, torch.from_numpy(result.mask), self.palette))

    def close(self) -> dict[str, Path]:
        written = {"masks": self.output / "masks"}
        return {**written, "overlays": self.output / "overlays"} if self.draw else written
