"""One optimizer step of a network, checked to have trained it."""

from __future__ import annotations

import torch
from torch import nn


def sgd_step(model: nn.Module, loss: torch.Tensor, lr: float = 0.01) -> None:
    """Back-propagate `loss` (computed by `model` in training mode) and take one SGD step; the loss must be
    finite and the step must change some parameter of `model` (gradients reached them)."""
    assert loss.ndim == 0 and torch.isfinite(loss), loss
    before = [parameter.detach().clone() for parameter in model.parameters()]
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=lr).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "the step changed no parameter"
