"""The module layout: what may import what."""

import subprocess
import sys

import pytest


def loaded_cvkit_modules(module: str) -> set[str]:
    """The cvkit modules a fresh interpreter has loaded after importing `module`."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('cvkit')))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_console_output_is_a_leaf_module() -> None:
    # Tasks, train, evaluate and the scripts all report through it: importing it must pull in no other layer.
    assert loaded_cvkit_modules("cvkit.console") == {"cvkit", "cvkit.console"}


def test_the_run_summary_does_not_import_the_tasks() -> None:
    assert not any(name.startswith("cvkit.tasks") for name in loaded_cvkit_modules("cvkit.summary"))


@pytest.mark.parametrize(
    ("argument", "exit_status"), [("--help", "0"), ("--cfg=job", "None"), ("data.batch_size=0", "2")]
)
def test_the_cli_answers_before_torch_is_imported(argument: str, exit_status: str) -> None:
    # --help, --cfg job and a config error answer from Hydra and the config alone (docs/benchmarks.md: start-up).
    code = (
        "import sys, cvkit.cli\n"
        f"sys.argv = ['cvkit-train', {argument!r}]\n"
        "code = None\ntry:\n    cvkit.cli.train_main()\nexcept SystemExit as stop:\n    code = stop.code\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'timm')]\n"
        "print('EXIT', code, 'HEAVY', ' '.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    exit_code, heavy = result.stderr.rsplit("EXIT ", 1)[1].split(" HEAVY")
    assert exit_code.strip() == exit_status and heavy.strip() == ""
