"""What a fresh install gets: every subpackage in the wheel, every imported package declared, the installed
versions within the declared bounds, and the tested set (constraints.txt) within them too; the distribution's
name, version, license and Python versions."""

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import cvkit
from tests.helpers.cli import cli_env
from tests.helpers.paths import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DEPENDENCIES = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
EXTRAS = {
    name: [Requirement(line) for line in lines] for name, lines in PYPROJECT["project"]["optional-dependencies"].items()
}


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    source = REPO / "src"
    found = {".".join(init.parent.relative_to(source).parts) for init in source.rglob("__init__.py")}
    assert found | {"cvkit.configs"} == listed


def imported_top_level(folder: str) -> set[str]:
    """The top-level names of every package imported under `folder` of the repository (any scope)."""
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"cvkit", "hydra_plugins", "__main__", "__future__"}


def test_every_package_cvkit_imports_is_declared() -> None:
    declared = {canonicalize_name(requirement.name) for requirement in DEPENDENCIES}
    extras = ("trackers", "sweep", "slurm", "detr", "streaming")
    declared |= {canonicalize_name(r.name) for extra in extras for r in EXTRAS[extra]}
    distributions = packages_distributions()
    # lightning_fabric ships inside the pytorch-lightning wheel (its own distribution is another project).
    shipped_with = {"lightning_fabric": "pytorch-lightning"}
    undeclared = {}
    for name in sorted(imported_top_level("src")):
        providers = {canonicalize_name(shipped_with.get(name, d)) for d in distributions.get(name, [name])}
        if not providers & declared:
            undeclared[name] = sorted(providers)
    assert undeclared == {}, f"imported by src/ but not declared in pyproject.toml: {undeclared}"


def test_the_installed_versions_are_within_the_declared_bounds() -> None:
    outside = {}
    for requirement in [*DEPENDENCIES, *EXTRAS["dev"]]:
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            outside[requirement.name] = "not installed"
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            outside[requirement.name] = f"{installed} is not {requirement.specifier}"
    assert outside == {}, outside


def test_the_tested_set_is_within_the_declared_bounds() -> None:
    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned_version = line.partition("==")
            pinned[canonicalize_name(name)] = pinned_version.strip()
    for requirement in DEPENDENCIES:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"constraints.txt pins no version of {requirement.name}"
        assert requirement.specifier.contains(pinned[name]), (
            f"constraints.txt: {name}=={pinned[name]} is not {requirement}"
        )


def test_the_installed_cvkit_is_this_distribution() -> None:
    """`import cvkit` comes from the distribution pyproject names (on PyPI "cvkit" is another project), at its
    version; an environment installed before a rename still has the old name: pip install -e . again."""
    name = PYPROJECT["project"]["name"]
    assert [canonicalize_name(d) for d in packages_distributions()["cvkit"]] == [canonicalize_name(name)]
    assert version(name) == PYPROJECT["project"]["version"] == cvkit.__version__


def test_the_license_file_is_the_declared_license() -> None:
    (license_file,) = PYPROJECT["project"]["license-files"]
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (REPO / license_file).read_text().startswith("MIT License\n\nCopyright (c) 2026 the cvkit authors\n")


def test_the_python_classifiers_include_the_floor() -> None:
    """The classifiers name the Python versions the suite is run on (3.11 in CI, 3.12 by hand): requires-python's
    floor among them, and none it excludes."""
    pattern = re.compile(r"Programming Language :: Python :: (3\.\d+)")
    listed = [m.group(1) for c in PYPROJECT["project"]["classifiers"] if (m := pattern.fullmatch(c))]
    requires_python = PYPROJECT["project"]["requires-python"]
    assert requires_python.removeprefix(">=") in listed
    assert all(SpecifierSet(requires_python).contains(f"{minor}.0") for minor in listed)


@pytest.fixture(scope="module")
def regular_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cvkit installed as ``pip install .`` installs it, from a built wheel (not this editable checkout), into a
    folder of its own; its dependencies are the test environment's."""
    target = tmp_path_factory.mktemp("site-packages")
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet"]
    subprocess.run([*pip, "--target", str(target), str(REPO)], check=True, capture_output=True, timeout=600)
    return target


def run_installed(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``cvkit-train ARGS`` of the regular install in `site` (ahead of the editable one on the path)."""
    script = "import sys, cvkit, cvkit.cli; print('cvkit from', cvkit.__file__); sys.exit(cvkit.cli.train_main())"
    env = {**cli_env(), "PYTHONPATH": str(site)}
    command = [sys.executable, "-c", script, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_a_regular_install_answers_help_composes_and_sweeps_with_optuna(regular_install: Path, tmp_path: Path) -> None:
    """In a regular install Hydra's plugin scan finds and executes cvkit's Optuna sweeper itself (an editable one
    hides it): `--help`, a plain run's config and an Optuna sweep must all work there too. Both crashed once,
    where the editable install the suite runs in did not (a recursion at start, a dataclass without module)."""
    help_text = run_installed(regular_install, "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "config groups" in help_text.stdout, help_text.stderr[-2000:]
    assert f"cvkit from {regular_install}" in help_text.stdout
    assert run_installed(regular_install, "--cfg", "job", cwd=tmp_path).returncode == 0
    sweep = run_installed(
        regular_install,
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=1",
        "optimizer.lr=interval(0.01,0.1)",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "scheduler.warmup_epochs=0",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-3000:]
    assert "best_value" in (tmp_path / "sweep" / "optimization_results.yaml").read_text()
