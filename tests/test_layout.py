"""The module layout: what may import what."""

import subprocess
import sys


def loaded_cvkit_modules(module: str) -> set[str]:
    """The cvkit modules a fresh interpreter has loaded after importing `module`."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('cvkit')))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_console_output_is_a_leaf_module() -> None:
    # Tasks, train, evaluate and the scripts all report through it: importing it must pull in no other layer.
    assert loaded_cvkit_modules("cvkit.console") == {"cvkit", "cvkit.console"}


def test_the_run_summary_does_not_import_the_tasks() -> None:
    assert not any(name.startswith("cvkit.tasks") for name in loaded_cvkit_modules("cvkit.summary"))
