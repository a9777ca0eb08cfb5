"""Using a trained classifier: cvkit.load / cvkit-predict / cvkit-export on real bccd_cells images, the
input gathering, and a smoke run of the inference benchmark. (Detection and segmentation: in
test_detection.py and test_segmentation.py, on the models trained there.)"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import cvkit
from cvkit.builders import build_datamodule
from cvkit.errors import CvkitError
from cvkit.export import export
from cvkit.inference.inputs import find_images
from cvkit.inference.loading import resolve_device
from tests.helpers.checkpoints import final_checkpoint
from tests.helpers.cli import assert_exit, run_cli, train_into
from tests.helpers.configs import export_cfg
from tests.helpers.logs import read_metrics
from tests.helpers.paths import REPO
from tests.helpers.presets import tiny_folder_classification

VAL_IMAGES = 32  # the images the run validates on: limit_val_batches=2 of 16, in split order


@pytest.fixture(scope="module")
def classifier_run(bccd_cells: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("classifier") / "run"
    train_into(run_dir, *tiny_folder_classification(bccd_cells))
    return run_dir


def val_paths(run_dir: Path) -> list[Path]:
    """The val images of the run, in the order it validated them."""
    recorded = final_checkpoint(run_dir)["cvkit"]
    datamodule = build_datamodule(OmegaConf.create(recorded["config"]))
    return datamodule.splits["val"].images.paths[:VAL_IMAGES]


def test_load_needs_no_training_code(classifier_run: Path) -> None:
    # In a fresh interpreter: the predictor is rebuilt and predicts without Lightning, the tasks or builders.
    code = (
        "import sys, cvkit\n"
        f"model = cvkit.load({str(classifier_run / 'checkpoints' / 'last.ckpt')!r}, device='cpu')\n"
        f"print(model.predict([{str(val_paths(classifier_run)[0])!r}])[0].labels[0])\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning')\n"
        "          or m.startswith(('cvkit.tasks', 'cvkit.builders', 'cvkit.train'))]\n"
        "print('training modules:', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    label, modules = result.stdout.strip().splitlines()[-2:]
    assert label in ("Platelets", "RBC", "WBC")
    assert modules == "training modules: []"


def test_load_predicts_what_validation_scored(classifier_run: Path) -> None:
    model = cvkit.load(classifier_run / "checkpoints" / "last.ckpt", device="cpu", top_k=2)
    assert model.kind == "classification" and model.class_names == ["Platelets", "RBC", "WBC"]
    paths = val_paths(classifier_run)
    results = model.predict(paths, batch_size=5)
    assert len(results) == VAL_IMAGES and all(len(r.labels) == 2 and r.scores[0] >= r.scores[1] for r in results)
    truth = [path.parent.name for path in paths]
    accuracy = np.mean([r.labels[0] == label for r, label in zip(results, truth)])
    assert accuracy == pytest.approx(read_metrics(classifier_run)["val/acc"], abs=1e-6)
    # Arrays and PIL images give what files give.
    again = model.predict([np.asarray(Image.open(paths[0]).convert("RGB")), Image.open(paths[1])])
    assert again[0].scores == pytest.approx(results[0].scores) and again[1].labels == results[1].labels


def write_inputs(source: list[Path], folder: Path) -> None:
    """Three real images in a nested folder, a corrupt one and a non-image file."""
    (folder / "nested").mkdir(parents=True)
    for index, path in enumerate(source[:3]):
        (folder / ("nested" if index == 2 else ".") / f"cell{index}.jpg").write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image")


def test_predict_cli_writes_top_k_and_skips_corrupt_images(classifier_run: Path, tmp_path: Path) -> None:
    write_inputs(val_paths(classifier_run), tmp_path / "in")
    checkpoint = classifier_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "out"
    result = run_cli("cvkit-predict", f"ckpt_path={checkpoint}", f"input={tmp_path / 'in'}", f"output={out}", "top_k=3")
    assert_exit(result, 0, "skipped 1 unreadable images", "broken.jpg")
    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert [row["file"] for row in rows] == ["cell0.jpg", "cell1.jpg", "nested/cell2.jpg"]
    model = cvkit.load(checkpoint, device="cpu", top_k=3)
    expected = model.predict([tmp_path / "in" / "cell0.jpg"])[0]
    assert [rows[0][f"label_{k}"] for k in (1, 2, 3)] == expected.labels
    assert float(rows[0]["score_1"]) == pytest.approx(expected.scores[0], abs=1e-6)
    assert json.loads((out / "predictions.json").read_text())[2]["file"] == "nested/cell2.jpg"
    assert (out / "predict.log").is_file()

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG broken")
    failed = run_cli("cvkit-predict", f"ckpt_path={checkpoint}", f"input={tmp_path / 'bad'}", f"output={out}2")
    assert_exit(failed, 2, "none of the 1 images could be read")


def test_onnx_export_matches_pytorch_and_records_the_input(classifier_run: Path, tmp_path: Path) -> None:
    checkpoint = classifier_run / "checkpoints" / "last.ckpt"
    output = tmp_path / "model.onnx"
    result = run_cli("cvkit-export", f"ckpt_path={checkpoint}", "format=onnx", f"output={output}")
    assert_exit(result, 0, "largest |difference|", "on 4 images (tolerance 0.0001)")
    metadata = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert json.loads(metadata["class_names"]) == ["Platelets", "RBC", "WBC"]
    assert json.loads(metadata["image_size"]) == 32 and json.loads(metadata["mean"]) == [0.485, 0.456, 0.406]
    # The batch axis is dynamic: 5 images at once give what PyTorch gives.
    model = cvkit.load(checkpoint, device="cpu")
    batch = torch.stack([model.prepare(np.asarray(Image.open(p))) for p in val_paths(classifier_run)[:5]])
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": batch.numpy()})[0]
    with torch.inference_mode():
        assert np.abs(logits - model.model(batch).numpy()).max() < 1e-4


def test_torchscript_export_and_a_failed_check_writes_nothing(classifier_run: Path, tmp_path: Path) -> None:
    checkpoint = classifier_run / "checkpoints" / "last.ckpt"
    images = str(Path(val_paths(classifier_run)[0]).parent)
    done = export(export_cfg(checkpoint, format="torchscript", output=str(tmp_path / "m.pt"), images=images))
    assert done["difference"] <= 1e-4 and (tmp_path / "m.pt").is_file()
    extra = {"cvkit.json": ""}
    torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["cvkit.json"])["class_names"] == ["Platelets", "RBC", "WBC"]
    with pytest.raises(CvkitError, match="differs from the PyTorch model by up to .* nothing was written"):
        export(export_cfg(checkpoint, output=str(tmp_path / "failed.onnx"), images=images, tolerance=-1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_find_images_takes_a_file_a_folder_or_a_glob(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.PNG", "a/b/3.txt", "a/.hidden.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert find_images(str(tmp_path / "a")) == ([tmp_path / "a/1.jpg", tmp_path / "a/b/2.PNG"], tmp_path / "a")
    assert find_images(str(tmp_path / "a/**/*.PNG")) == ([tmp_path / "a/b/2.PNG"], tmp_path / "a")
    assert find_images(str(tmp_path / "a/1.jpg")) == ([tmp_path / "a/1.jpg"], tmp_path / "a")
    with pytest.raises(CvkitError, match="no such file or folder"):
        find_images(str(tmp_path / "nowhere"))
    with pytest.raises(CvkitError, match="no image files found"):
        find_images(str(tmp_path / "a/*.gif"))


def test_load_refuses_what_is_not_a_cvkit_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CvkitError, match="has no cvkit run record"):
        cvkit.load(path)


def test_inference_benchmark_smoke_run(classifier_run: Path, tmp_path: Path) -> None:
    script = REPO / "scripts" / "benchmarks" / "inference.py"
    checkpoint = classifier_run / "checkpoints" / "last.ckpt"
    models = ["--backbone", "resnet", "--image-size", "32", "--checkpoint", str(checkpoint)]
    settings = ["--batch-sizes", "2", "--backends", "eager", "onnxruntime", "--warmup", "1", "--runs", "3"]
    output = ["--threads", "1", "--json", str(tmp_path / "b.json")]
    command = [sys.executable, str(script), *models, *settings, *output]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "b.json").read_text())
    trained = "last.ckpt (classification model (resnet18, 3 classes))"
    assert [(r["model"], r["input"], r["backend"]) for r in report["rows"]] == [
        ("resnet18", "32x32", "eager"),
        ("resnet18", "32x32", "onnxruntime"),
        (trained, "32x32", "eager"),
        (trained, "32x32", "onnxruntime"),
    ]
    for row in report["rows"]:
        assert row["images_per_s"] > 0 and row["p95_ms"] >= row["median_ms"] and len(row["latencies_ms"]) == 3
    assert report["machine"]["threads"] == 1 and "images/s" in result.stdout


def test_devices_are_checked() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CvkitError, match="device='gpu0' is not a device: use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(CvkitError, match="this machine has no CUDA GPU: use device=cpu"):
            resolve_device("cuda:1")
