"""The image installs every package the project defines (the engine moved to conceptlens/;
the Dockerfile kept copying only backend/ and worker/, so `pip install .` lacked it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_image_copies_every_package_before_installing() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    install = next(k for k, line in enumerate(lines) if line.strip() == "RUN pip install .")
    copied = {line.split()[1] for line in lines[:install] if line.startswith("COPY ")}
    assert packages <= copied, f"not copied before `pip install .`: {packages - copied}"
