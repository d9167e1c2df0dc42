"""The image holds the library and the service: the engine moved to conceptlens/ (the
Dockerfile kept copying only backend/ and worker/, so `pip install .` lacked it), and the
service is not installed (only the library is), so the image runs it from /app."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = {"backend", "worker", "frontend"}


def _lines() -> list[str]:
    return (ROOT / "Dockerfile").read_text().splitlines()


def _install_line(lines: list[str]) -> int:
    """The line that installs the project from its folder (`pip install .` or `".[extra]"`)."""
    return next(
        k for k, line in enumerate(lines)
        if line.startswith("RUN pip install") and line.split()[-1].strip('"').startswith(".")
    )  # fmt: skip


def test_the_image_copies_every_package_and_the_service_before_installing() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    lines = _lines()
    copied = {line.split()[1] for line in lines[: _install_line(lines)] if line.startswith("COPY ")}
    assert packages | SERVICE <= copied, f"not copied: {(packages | SERVICE) - copied}"


def test_the_image_installs_the_service_dependencies_and_runs_the_service_from_app() -> None:
    lines = _lines()
    assert '".[service]"' in lines[_install_line(lines)]
    workdir = next(line.split()[1] for line in lines if line.startswith("WORKDIR "))
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert f"PYTHONPATH={workdir}" in env
