import pytest
import torch

from cvkit.batching import per_device_batch_size
from cvkit.errors import CvkitError
from cvkit.models import build_classifier
from cvkit.optim.param_groups import parameter_groups


def test_global_batch_is_split_over_devices_and_accumulation() -> None:
    assert per_device_batch_size(8192, 256, 1) == 32
    assert per_device_batch_size(128, 2, 2) == 32
    with pytest.raises(CvkitError, match=r"global_batch_size=100 does not divide .* = 8; .* e.g. 96 or 104"):
        per_device_batch_size(100, 4, 2)
    with pytest.raises(CvkitError, match="must be > 0"):
        per_device_batch_size(0, 1, 1)


def test_no_bn_bias_decay_leaves_only_weights_decayed() -> None:
    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32)
    plain = parameter_groups(model, 1e-4, no_bn_bias_decay=False)
    assert len(plain) == 1 and plain[0]["weight_decay"] == 1e-4
    groups = parameter_groups(model, 1e-4, no_bn_bias_decay=True)
    by_decay = {group["weight_decay"]: group["params"] for group in groups}
    assert all(p.ndim > 1 for p in by_decay[1e-4])
    assert {id(p) for p in by_decay[0.0]} == {id(model.bn1.weight), id(model.bn1.bias), id(model.fc.bias)} | {
        id(p) for name, p in model.named_parameters() if p.ndim == 1
    }


def test_resnet_blocks_start_with_zero_last_bn_gamma() -> None:
    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32, zero_init_last=True)
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0
    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32, zero_init_last=False)
    assert torch.count_nonzero(model.layer1[0].bn2.weight) > 0
