import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cvkit.metrics import CocoEvaluator
from tests.helpers.coco import cocoeval_stats
from tests.helpers.network import free_port, gloo_group

CLASSES = ("RBC", "WBC", "Platelets")
CATEGORY_IDS = (3, 7, 11)  # non-contiguous on purpose: label i is category CATEGORY_IDS[i - 1]


def voc_to_coco(annotation_files: list[Path]) -> dict:
    """A COCO ground-truth dict from VOC XML files (image id: the file's number; difficult -> iscrowd)."""
    images, annotations = [], []
    for path in annotation_files:
        root = ET.parse(path).getroot()
        image_id = int(path.stem.split("_")[-1])
        size = root.find("size")
        width, height = (int(size.findtext(key)) for key in ("width", "height"))
        images.append({"id": image_id, "width": width, "height": height, "file_name": root.findtext("filename")})
        for obj in root.iter("object"):
            xmin, ymin, xmax, ymax = (float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[CLASSES.index(obj.findtext("name"))],
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "area": (xmax - xmin) * (ymax - ymin),
                    "iscrowd": int(obj.findtext("difficult", "0")),
                }
            )
    categories = [{"id": i, "name": name} for i, name in zip(CATEGORY_IDS, CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture(scope="module")
def ground_truth(bccd_voc: Path) -> dict:
    return voc_to_coco(sorted((bccd_voc / "Annotations").glob("*.xml"))[:20])


def image_ids(ground_truth: dict) -> list[int]:
    return [image["id"] for image in ground_truth["images"]]


def detections(ground_truth: dict, ids: list[int], shift: float = 0.0, drop_every: int = 0) -> list[dict]:
    """Per image in `ids`: its ground-truth boxes as detector outputs (xyxy, 1-based labels), each moved
    right by `shift` of its width, every `drop_every`-th one left out, scores falling with the position."""
    outputs = []
    for image_id in ids:
        kept = [a for a in ground_truth["annotations"] if a["image_id"] == image_id]
        kept = [a for i, a in enumerate(kept) if not drop_every or i % drop_every != drop_every - 1]
        boxes = [[x + shift * w, y, x + shift * w + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)]
        outputs.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.linspace(1.0, 0.3, len(kept)) if shift else torch.ones(len(kept)),
                "labels": torch.tensor([CATEGORY_IDS.index(a["category_id"]) + 1 for a in kept], dtype=torch.int64),
            }
        )
    return outputs


def evaluated(ground_truth: dict, ids: list[int], **kwargs: float) -> CocoEvaluator:
    evaluator = CocoEvaluator(ground_truth, CATEGORY_IDS)
    evaluator.update(ids, detections(ground_truth, ids, **kwargs))
    return evaluator


def test_perfect_predictions_score_one(ground_truth: dict) -> None:
    evaluator = evaluated(ground_truth, image_ids(ground_truth))
    metrics = evaluator.compute()
    assert metrics["map"] == 1.0
    assert metrics["map_50"] == 1.0
    assert metrics["mar_100"] == 1.0
    assert metrics["map_small"] == -1.0  # BCCD has no box under 32x32 pixels: pycocotools' "undefined"
    assert evaluator.per_class_ap() == {name: {"ap": 1.0, "ap_50": 1.0} for name in CLASSES}


def test_shifted_and_missing_boxes_equal_pycocotools(ground_truth: dict) -> None:
    ids = image_ids(ground_truth)
    evaluator = evaluated(ground_truth, ids, shift=0.2, drop_every=3)
    metrics = evaluator.compute()
    assert list(metrics.values()) == cocoeval_stats(ground_truth, evaluator.results(), ids)
    assert 0.1 < metrics["map"] < 0.9
    # Re-scoring the written predictions gives the same numbers: no precision lost on the way to JSON.
    assert cocoeval_stats(ground_truth, json.loads(json.dumps(evaluator.results())), ids) == list(metrics.values())
    per_class = evaluator.per_class_ap()
    assert list(per_class) == list(CLASSES)
    assert sum(c["ap"] for c in per_class.values()) / len(CLASSES) == pytest.approx(metrics["map"], abs=1e-12)


def test_only_the_evaluated_images_count(ground_truth: dict) -> None:
    ids = image_ids(ground_truth)[:7]
    evaluator = evaluated(ground_truth, ids, shift=0.2, drop_every=3)
    metrics = evaluator.compute()
    results = evaluated(ground_truth, ids, shift=0.2, drop_every=3).results()
    assert list(metrics.values()) == cocoeval_stats(ground_truth, results, ids)
    # ground_truth.json + predictions.json, re-scored as anyone would (all their images), agree too.
    written = json.loads(json.dumps(evaluator.evaluated_ground_truth()))
    assert sorted(image["id"] for image in written["images"]) == sorted(ids)
    assert list(metrics.values()) == cocoeval_stats(written, results, None)


def test_no_predictions_score_zero(ground_truth: dict) -> None:
    ids = image_ids(ground_truth)
    evaluator = CocoEvaluator(ground_truth, CATEGORY_IDS)
    evaluator.update(ids, [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}] * len(ids))
    metrics = evaluator.compute()
    assert evaluator.results() == []
    assert metrics["map"] == 0.0
    assert metrics == {key: -1.0 if key.endswith("_small") else 0.0 for key in metrics}
    assert evaluator.per_class_ap() == {name: {"ap": 0.0, "ap_50": 0.0} for name in CLASSES}


def test_labels_map_to_category_ids(ground_truth: dict) -> None:
    ids = image_ids(ground_truth)
    evaluator = evaluated(ground_truth, ids)
    truth = sorted((a["image_id"], a["category_id"], *a["bbox"]) for a in ground_truth["annotations"])
    assert sorted((r["image_id"], r["category_id"], *r["bbox"]) for r in evaluator.results()) == truth
    assert {r["category_id"] for r in evaluator.results()} == set(CATEGORY_IDS)
    swapped = CocoEvaluator(ground_truth, [CATEGORY_IDS[1], CATEGORY_IDS[0], CATEGORY_IDS[2]])
    swapped.update(ids, detections(ground_truth, ids))
    assert swapped.compute()["map"] < 0.5


def test_bad_inputs_are_named(ground_truth: dict) -> None:
    with pytest.raises(ValueError, match=r"\[5\]"):
        CocoEvaluator(ground_truth, [3, 5, 11])
    evaluator = CocoEvaluator(ground_truth, CATEGORY_IDS)
    with pytest.raises(ValueError, match="labels must lie in 1..3"):
        evaluator.update(
            [image_ids(ground_truth)[0]],
            [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.zeros(1)}],
        )
    with pytest.raises(ValueError, match="image id 999999"):
        evaluator.update([999999], detections(ground_truth, image_ids(ground_truth)[:1]))
    with pytest.raises(RuntimeError, match="before any update"):
        evaluator.compute()


def gather_worker(rank: int, port: int, ground_truth: dict, ids: list[int], out: Path) -> None:
    """One of two gloo ranks: evaluate half of `ids` (plus the other half's first image, as DistributedSampler's
    padding does), gather, and write what this rank computes."""
    with gloo_group(rank, port):
        half = len(ids) // 2
        mine = ids[:half] if rank == 0 else [*ids[half:], ids[0]]
        evaluator = evaluated(ground_truth, mine, shift=0.2, drop_every=3)
        evaluator.gather()
        metrics = evaluator.compute()
        (out / f"rank{rank}.json").write_text(json.dumps({"metrics": metrics, "results": evaluator.results()}))


def test_gather_over_two_gloo_ranks_equals_one_process(ground_truth: dict, tmp_path: Path) -> None:
    ids = image_ids(ground_truth)
    # fork, not spawn: the children need not import torch again (9 s of the test on a busy 2-core machine).
    mp.start_processes(gather_worker, args=(free_port(), ground_truth, ids, tmp_path), nprocs=2, start_method="fork")
    single = evaluated(ground_truth, ids, shift=0.2, drop_every=3)
    expected = {"metrics": single.compute(), "results": single.results()}
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
