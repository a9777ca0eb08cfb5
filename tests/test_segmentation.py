"""Segmentation end to end on the real CamVid set: cvkit-train as a user runs it, then cvkit-eval."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cvkit
from cvkit.builders import build_datamodule
from cvkit.export import export
from tests.helpers.cli import assert_exit, evaluate_val, run_cli, train_into
from tests.helpers.configs import compose_train, export_cfg
from tests.helpers.datasets import CAMVID_IGNORE
from tests.helpers.logs import read_metrics, read_report, tensorboard_tags
from tests.helpers.presets import short_segmentation


@pytest.fixture(scope="module")
def camvid_run(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("camvid") / "run"
    return run_dir, train_into(run_dir, *short_segmentation(camvid))


def best_constant_miou(mask_files: list[Path], num_classes: int, ignore_index: int) -> float:
    """The mIoU of the best trivial predictor, one class everywhere: that class's IoU is its share of
    the counted pixels, every other class's is 0, over the classes present."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for path in mask_files:
        mask = np.asarray(Image.open(path)).ravel()
        counts += np.bincount(mask[mask != ignore_index], minlength=num_classes)
    return counts.max() / counts.sum() / np.count_nonzero(counts)


def test_short_camvid_run_beats_a_trivial_predictor(camvid_run: tuple[Path, str], camvid: Path) -> None:
    run_dir, stdout = camvid_run
    metrics = read_metrics(run_dir)
    evaluated = sorted((camvid / "valannot").glob("*.png"))[:32]  # 4 val batches of 8, in file order
    trivial = best_constant_miou(evaluated, num_classes=11, ignore_index=CAMVID_IGNORE)
    assert trivial < 0.05
    assert metrics["val/miou"] > 2 * trivial, (metrics["val/miou"], trivial)
    assert metrics["val/pixel_acc"] > 0.4
    report = read_report(run_dir)["val_per_class"]
    assert len(report) == 11 and set(report["Road"]) == {"iou", "dice", "support"}
    assert "val IoU per class" in stdout
    assert "val/segmentation/0" in tensorboard_tags(run_dir)["images"]


def test_eval_scores_at_the_original_mask_size(camvid_run: tuple[Path, str], camvid: Path, tmp_path: Path) -> None:
    run_dir, _ = camvid_run
    eval_dir = tmp_path / "eval"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    trained, evaluated = read_metrics(run_dir), evaluate_val(checkpoint, eval_dir, val_batches=4)
    for key in ("val/miou", "val/pixel_acc", "val/dice"):
        assert evaluated[key] == pytest.approx(trained[key], rel=1e-6), key
    # The counted pixels are those of the original masks (360 x 480), not of the 64 x 96 inputs.
    per_class = read_report(eval_dir)["val_per_class"]
    masks = [np.asarray(Image.open(p)) for p in sorted((camvid / "valannot").glob("*.png"))[:32]]
    assert sum(row["support"] for row in per_class.values()) == sum(int((m != CAMVID_IGNORE).sum()) for m in masks)


def test_predicted_masks_score_what_validation_scored(camvid_run: tuple[Path, str], camvid: Path) -> None:
    """cvkit.load on the trained checkpoint: masks at the original size whose pixel accuracy on the run's
    val images is the run's val/pixel_acc."""
    run_dir, _ = camvid_run
    model = cvkit.load(run_dir / "checkpoints" / "last.ckpt", device="cpu")
    files = sorted((camvid / "val").glob("*.jpg"))[:32]
    results = model.predict(files, batch_size=8)
    truth = [np.asarray(Image.open(camvid / "valannot" / f"{path.stem}.png")) for path in files]
    assert all(found.mask.shape == mask.shape == (360, 480) for found, mask in zip(results, truth, strict=True))
    correct = sum(int(((found.mask == mask) & (mask != CAMVID_IGNORE)).sum()) for found, mask in zip(results, truth))
    counted = sum(int((mask != CAMVID_IGNORE).sum()) for mask in truth)
    assert correct / counted == pytest.approx(read_metrics(run_dir)["val/pixel_acc"], abs=1e-4)


def test_predict_writes_masks_and_export_matches(camvid_run: tuple[Path, str], camvid: Path, tmp_path: Path) -> None:
    run_dir, _ = camvid_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    pattern = str(camvid / "val" / "0016E5_0796[13].jpg")
    result = run_cli("cvkit-predict", f"ckpt_path={checkpoint}", f"input='{pattern}'", f"output={tmp_path / 'out'}")
    assert_exit(result, 0)
    written = sorted(p.name for p in (tmp_path / "out" / "masks").iterdir())
    assert written == ["0016E5_07961.png", "0016E5_07963.png"]
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / written[0]))
    expected = cvkit.load(checkpoint, device="cpu").predict([camvid / "val" / "0016E5_07961.jpg"])[0].mask
    assert mask.dtype == np.uint8 and np.array_equal(mask, expected)
    assert Image.open(tmp_path / "out" / "overlays" / "0016E5_07961.jpg").size == (480, 360)

    done = export(export_cfg(checkpoint, output=str(tmp_path / "unet.onnx"), images=pattern))
    assert done["difference"] <= 1e-4 and done["metadata"]["outputs"] == "logits [N, K, H, W]"


def test_one_number_image_size_is_a_square(camvid: Path, tmp_path: Path) -> None:
    size = ["data.image_size=40", "data.batch_size=2", "data.num_workers=0"]
    module = build_datamodule(compose_train(tmp_path, "task=segmentation", "data=camvid", f"data.root={camvid}", *size))
    images, masks = next(iter(module.train_dataloader()))
    assert module.image_size == (40, 40) and images.shape == (2, 3, 40, 40) and masks.shape == (2, 40, 40)
    images, masks = next(iter(module.val_dataloader()))
    assert images.shape == (2, 3, 40, 40) and masks[0].shape == (360, 480)  # scored at the mask's own size
