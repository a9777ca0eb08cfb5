"""backbone.weights from anywhere a user has them: a cvkit checkpoint of another task, a timm or torchvision
file, a safetensors file; names matched by rule, and what was loaded, skipped for shape and missing reported."""

import logging
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from omegaconf import OmegaConf
from safetensors.torch import save_file

from cvkit.errors import CvkitError
from cvkit.models import backbone_layers, build_classifier, build_network
from cvkit.models.weights import load_weights_file, matching_prefix
from cvkit.train import train
from tests.helpers.configs import compose_train
from tests.helpers.paths import REPO
from tests.helpers.presets import TINY_CLASSIFICATION

TASK_CONFIGS = REPO / "configs" / "task"


def model_options(task: str, **changes: object) -> dict:
    """The ``task.model`` options of cvkit's `task` config, with `changes`."""
    options = OmegaConf.to_container(OmegaConf.load(TASK_CONFIGS / f"{task}.yaml").model)
    return {**options, **changes}


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cvkit classification run's checkpoint (ResNet-18 on digits, two steps)."""
    run_dir = tmp_path_factory.mktemp("classifier")
    train(compose_train(run_dir, *TINY_CLASSIFICATION, "backbone.name=resnet18"))
    return run_dir / "checkpoints" / "last.ckpt"


def backbone_tensors(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state of `network`'s timm backbone, by its names in the backbone."""
    layers = backbone_layers(network)
    prefix = next(iter(layers.layer)).removesuffix("conv1.weight")
    return {key[len(prefix) :]: value for key, value in network.state_dict().items() if key.startswith(prefix)}


@pytest.mark.parametrize(
    ("task", "model"),
    [
        ("detection", model_options("detection", min_size=64, max_size=64)),
        ("segmentation", model_options("segmentation")),
    ],
)
def test_a_classification_runs_backbone_seeds_a_detector_and_a_segmenter(
    classifier_checkpoint: Path, task: str, model: dict, caplog: pytest.LogCaptureFixture
) -> None:
    backbone = {"family": "resnet", "name": "resnet18", "weights": str(classifier_checkpoint)}
    with caplog.at_level(logging.INFO, logger="cvkit.models.weights"):
        network = build_network(task, backbone, model, 3, [64, 64], True)
    trained = torch.load(classifier_checkpoint, weights_only=True)["state_dict"]
    used = backbone_tensors(network)
    # Every tensor of ResNet-18 but its classifier (fc), BatchNorm statistics included (the detector then freezes
    # its BatchNorm, as for any loaded weights: FrozenBatchNorm2d has no num_batches_tracked).
    assert len(used) == (100 if task == "detection" else 120)
    for key, value in used.items():
        assert torch.equal(value, trained[f"model.{key}"]), key
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("backbone.weights=")]
    assert "loaded 120 of resnet18's 120 tensors (the file's names under 'model.')" in line
    assert "skipped for shape 0 []; missing 0 []; 2 tensors of the file unused" in line


def test_a_detectors_backbone_seeds_a_classifier_whose_head_starts_anew(tmp_path: Path) -> None:
    detector = build_network(
        "detection", {"family": "resnet", "name": "resnet18"}, model_options("detection"), 3, None, True
    )
    path = tmp_path / "detector.pth"
    torch.save({"model": detector.state_dict()}, path)  # as torchvision's references save a detector
    classifier = build_classifier(family="resnet", name="resnet18", num_classes=4, image_size=32)
    report = load_weights_file(classifier, path, "resnet18")
    assert report.prefix == "backbone.body." and report.loaded == report.total == 120 and report.head == "fc"
    assert torch.equal(classifier.layer3[1].bn2.running_var, detector.backbone.body.layer3[1].bn2.running_var)


def test_timm_and_torchvision_files_and_the_report_of_what_did_not_fit(tmp_path: Path) -> None:
    timm_state = timm.create_model("resnet18", num_classes=1000).state_dict()
    del timm_state["layer4.1.bn2.weight"]
    timm_state["layer4.1.conv2.weight"] = torch.zeros(512, 512, 1, 1)
    save_file(timm_state, tmp_path / "model.safetensors")  # as the Hugging Face hub holds timm's weights
    classifier = build_classifier(family="resnet", name="resnet18", num_classes=10, image_size=32)
    head = classifier.fc.weight.clone()
    report = load_weights_file(classifier, tmp_path / "model.safetensors", "resnet18")
    assert (report.loaded, report.total, report.prefix, report.unused) == (118, 120, "", 2)  # the file's head unused
    assert report.skipped == ["layer4.1.conv2.weight: [512, 512, 1, 1] -> [512, 512, 3, 3]"]
    assert report.missing == ["layer4.1.bn2.weight", "layer4.1.conv2.weight"]
    assert torch.equal(classifier.fc.weight, head)  # the head is for your classes, whatever the file holds
    # torchvision's ResNet-18 has timm's names: every tensor but its head.
    torchvision_model = torchvision.models.resnet18()
    torch.save(torchvision_model.state_dict(), tmp_path / "resnet18-torchvision.pth")
    report = load_weights_file(classifier, tmp_path / "resnet18-torchvision.pth", "resnet18")
    assert report.loaded == 120 and torch.equal(classifier.conv1.weight, torchvision_model.conv1.weight)


def test_a_vits_position_embedding_is_resized_to_its_input(tmp_path: Path) -> None:
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0)
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    classifier = build_classifier(family="vit", name="vit_tiny_patch16_224", num_classes=3, image_size=64)
    report = load_weights_file(classifier, tmp_path / "vit.pth", "vit_tiny_patch16_224")
    assert report.skipped == report.missing == [] and report.head == "head"
    assert classifier.pos_embed.shape == (1, 1 + 4 * 4, 192)  # 64 px: 4 x 4 patches, resampled from 14 x 14
    assert torch.equal(classifier.pos_embed[:, 0], source.pos_embed[:, 0])  # the class token's embedding kept


def test_weights_of_another_network_are_refused_in_one_line(tmp_path: Path) -> None:
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "mobilenet.pth")
    classifier = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32)
    with pytest.raises(CvkitError, match=r"backbone.weights: none of the \d+ tensors of .*mobilenet.pth is one of"):
        load_weights_file(classifier, tmp_path / "mobilenet.pth", "resnet18")
    torch.save({key: torch.zeros(1) for key in classifier.state_dict()}, tmp_path / "resnet18-wrong.pth")
    with pytest.raises(CvkitError, match=r"120 tensors of .*resnet18-wrong.pth are named as resnet18's but none has"):
        load_weights_file(classifier, tmp_path / "resnet18-wrong.pth", "resnet18")


def test_the_prefix_that_matches_the_most_names_wins() -> None:
    target = {"layer1.0.conv1.weight", "conv1.weight", "fc.weight"}
    source = ["model.backbone.body.layer1.0.conv1.weight", "model.backbone.body.conv1.weight", "model.head.fc.weight"]
    assert matching_prefix(source, target) == "model.backbone.body."
    assert matching_prefix(["layer1.0.conv1.weight", "module.conv1.weight"], target) == ""  # equal counts: shortest
    assert matching_prefix(["encoder.stem.weight"], target) is None
