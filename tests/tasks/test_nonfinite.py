"""The nonfinite_loss config: a wrong one is named before training (the guard itself is driven by real runs in
tests/test_fault_tolerance.py)."""

import pytest

from cvkit.errors import CvkitError
from cvkit.tasks.nonfinite import NonfiniteLossGuard


@pytest.mark.parametrize("config", [{"action": "skip"}, {"action": "skip", "max_skipped": 3, "max_skips": 3}, None])
def test_a_nonfinite_loss_config_of_other_keys_is_named(config) -> None:
    with pytest.raises(CvkitError, match=r"nonfinite_loss must be \{action: stop\|skip, max_skipped: N\}"):
        NonfiniteLossGuard.from_config(config)


def test_an_unknown_action_is_named() -> None:
    with pytest.raises(CvkitError, match="nonfinite_loss.action='ignore' is not valid"):
        NonfiniteLossGuard.from_config({"action": "ignore", "max_skipped": 3})
