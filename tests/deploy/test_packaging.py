"""Packaging metadata and the lock the Docker build installs from."""

from __future__ import annotations

import runpy
import tomllib
from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement
from test_compose import ROOT, parse_dockerfile

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


def test_license_is_an_spdx_expression_with_its_file() -> None:
    """`license = "MIT"` (PEP 639), the MIT text in LICENSE, listed in license-files."""
    assert PYPROJECT["license"] == "MIT"
    assert PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_classifiers_and_urls_describe_the_project() -> None:
    """Python version classifiers agree with requires-python; no license classifier beside the
    SPDX string (PEP 639 forbids both); the URLs include source and issues."""
    classifiers = PYPROJECT["classifiers"]
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert PYPROJECT["requires-python"] == ">=3.11"
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert {"Source", "Issues", "Documentation"} <= PYPROJECT["urls"].keys()


def test_constraints_pin_every_direct_dependency_within_its_range() -> None:
    """constraints.txt pins each dependency of tickpipe[otlp] to one exact version that
    satisfies pyproject's range (a new dependency without a lock fails here)."""
    pins = locked()
    assert len(pins) >= 30, "transitive dependencies are pinned too"
    for text in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["otlp"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in constraints.txt: run scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), text


def test_the_lock_script_finds_the_whole_installed_tree() -> None:
    """scripts/lock walks tickpipe[otlp] recursively: direct, extra and transitive packages
    (not test or dev tools), each at its installed version."""
    pins = runpy.run_path(str(ROOT / "scripts" / "lock"))["runtime_pins"]()
    assert {"fastapi", "starlette", "pydantic-core", "opentelemetry-exporter-otlp-proto-grpc"} <= (
        pins.keys()
    )
    assert not {"pytest", "mypy", "ruff", "hypothesis", "tickpipe"} & pins.keys()
    assert pins["orjson"] == distribution("orjson").version


def test_the_image_installs_with_the_constraints() -> None:
    """The runtime stage copies constraints.txt and pip-installs with --constraint; the build
    context lets both it and LICENSE in."""
    final = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1]
    assert any("constraints.txt" in copy for copy in final.all("COPY"))
    installs = [run for run in final.all("RUN") if "pip install" in run]
    assert installs
    assert all("--constraint /tmp/constraints.txt" in run for run in installs)
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!constraints.txt", "!LICENSE"} <= set(allowed)
    assert Path(ROOT / "constraints.txt").is_file()
