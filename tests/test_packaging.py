"""What a fresh install gets: every subpackage in the wheel, every imported package declared, the installed
versions within the declared bounds, and the tested set (constraints.txt) within them too; the distribution's
name, version, license and Python versions."""

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import cvkit
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
    declared |= {canonicalize_name(r.name) for extra in ("trackers", "sweep", "slurm") for r in EXTRAS[extra]}
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
    """The classifiers name the Python versions CI tests (3.11 only, for now): requires-python's floor among them,
    and none it excludes."""
    pattern = re.compile(r"Programming Language :: Python :: (3\.\d+)")
    listed = [m.group(1) for c in PYPROJECT["project"]["classifiers"] if (m := pattern.fullmatch(c))]
    requires_python = PYPROJECT["project"]["requires-python"]
    assert requires_python.removeprefix(">=") in listed
    assert all(SpecifierSet(requires_python).contains(f"{minor}.0") for minor in listed)
