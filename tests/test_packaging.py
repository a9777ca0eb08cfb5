"""The wheel ships every subpackage: pyproject.toml lists them by hand (configs/ is mapped in)."""

import tomllib

from tests.helpers.paths import REPO


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    source = REPO / "src"
    found = {".".join(init.parent.relative_to(source).parts) for init in source.rglob("__init__.py")}
    assert found | {"cvkit.configs"} == listed
