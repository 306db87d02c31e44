"""The two environment files pin the same versions, and those are the versions installed."""

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", req.strip())
        assert match, f"{req!r} is not pinned to an exact version"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"])


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    return _pins(pip_section)


def test_environment_yml_pins_equal_pyproject():
    assert conda_pins() == pyproject_pins()


def test_installed_versions_are_the_pinned_ones():
    for name, pinned in pyproject_pins().items():
        installed = version(name).split("+")[0]  # torch reports 2.13.0+cpu on CPU builds
        assert installed == pinned, f"{name}: installed {installed}, pinned {pinned}"
