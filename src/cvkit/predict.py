"""predict(cfg): a checkpoint's predictions on image files, written to an output folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvkit.console import print_table
from cvkit.errors import CvkitError
from cvkit.inference.inputs import PreparedImages, find_images
from cvkit.inference.kinds import inference_kind
from cvkit.inference.loading import load

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.ckpt_path`` on the images of ``cfg.input``; write the task's outputs to ``cfg.output``.
    Unreadable images are listed in a warning and skipped; none readable is an error."""
    paths, base = find_images(str(cfg.input))
    predictor = load(cfg.ckpt_path, str(cfg.device), top_k=int(cfg.top_k), score_thresh=float(cfg.score_thresh))
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    writer = inference_kind(predictor.kind).writer(output, predictor.class_names, bool(cfg.draw))
    print_table(
        "cvkit predict",
        {
            "checkpoint": cfg.ckpt_path,
            "model": predictor.describe(),
            "input": f"{len(paths)} images from {cfg.input}",
            "device": predictor.device,
            "batch size": cfg.batch_size,
            "output": output,
        },
    )
    images = PreparedImages(paths, predictor.prepare, keep_image=bool(cfg.draw))
    loader = DataLoader(images, batch_size=int(cfg.batch_size), num_workers=int(cfg.num_workers), collate_fn=list)
    unreadable: list[str] = []
    with tqdm(total=len(paths), desc="predict", unit="img", disable=len(paths) < 2) as progress:
        for batch in loader:
            unreadable += [f"{paths[item.index]} ({item.problem})" for item in batch if item.tensor is None]
            read = [item for item in batch if item.tensor is not None]
            if read:
                results = predictor.predict_batch([item.tensor for item in read], [item.size for item in read])
                for item, result in zip(read, results, strict=True):
                    writer.add(paths[item.index].relative_to(base), item.size, item.image, result)
            progress.update(len(batch))
    if unreadable:
        log.warning("skipped %d unreadable images:\n  %s", len(unreadable), "\n  ".join(unreadable))
    if len(unreadable) == len(paths):
        raise CvkitError(f"input={cfg.input}: none of the {len(paths)} images could be read")
    written = writer.close()
    counts = {"predicted": f"{len(paths) - len(unreadable)} images", "skipped": f"{len(unreadable)} unreadable"}
    print_table("cvkit predict: done", {**counts, **written})
    return {"predicted": len(paths) - len(unreadable), "unreadable": unreadable, "outputs": written}
