"""The environments: envs/slm.yaml (rules under --sdm conda) installs the versions envs/requirements.txt pins."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(==|>=|<=|~=|<|>)?\s*([^\s,;]*)")


def _name(requirement: str) -> str:
    return REQUIREMENT.match(requirement).group(1).lower().replace("_", "-")


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            match = REQUIREMENT.match(line)
            assert match.group(3) == "==", f"not pinned: {line}"
            pins[_name(line)] = match.group(4)
    return pins


def test_the_conda_environment_pins_the_tested_versions():
    requirements = _pins((REPO / "envs" / "requirements.txt").read_text().splitlines())
    conda = yaml.safe_load((REPO / "envs" / "slm.yaml").read_text())
    [pip] = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    conda_pins = _pins(pip)
    assert {name: requirements.get(name) for name in conda_pins} == conda_pins
    # every runtime dependency of the package, and nothing else
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert set(conda_pins) == {_name(d) for d in project["dependencies"]}
    assert f"python={project['requires-python'].removeprefix('>=')}" in conda["dependencies"]
