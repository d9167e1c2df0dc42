"""`pip install .` installs the library, `conceptlens`, and nothing else: the service's
generic top-level names (`backend`, `worker`) used to land in site-packages, where any
other project's `backend` collides (issue 13, §5)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the tracked sources: a checkout's stale `build/lib` would be
    packed into the wheel as it is (setuptools reuses it)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for name in ("conceptlens", "backend", "worker"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(tree)],
        check=True, cwd=out,
    )  # fmt: skip
    (found,) = out.glob("conceptlens-*.whl")
    return found


def test_the_wheel_holds_only_the_library(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert {t for t in tops if not t.endswith(".dist-info")} == {"conceptlens"}
    assert "conceptlens = conceptlens.cli:run" in scripts


def test_the_web_stack_is_an_extra_not_a_requirement() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    web = ("fastapi", "uvicorn", "sqlalchemy", "celery", "alembic", "redis", "psycopg")
    core = " ".join(project["dependencies"])
    service = " ".join(project["optional-dependencies"]["service"])
    assert not [w for w in web if w in core]
    assert all(w in service for w in web)


def test_the_installed_library_imports_without_web_code_or_the_service(
    wheel: Path, tmp_path: Path
) -> None:
    """The wheel unpacked alone on the path (as `pip install .` lays it out), away from the
    checkout: `import conceptlens` works, imports no web code, and `backend`/`worker` are
    not importable from it; `conceptlens serve` there says where the dashboard lives."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
    )  # fmt: skip
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r})\n"
        f"sys.path = [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
        "sys.meta_path = [f for f in sys.meta_path if '__editable__' not in f.__module__]\n"
        "import importlib.util, conceptlens, conceptlens.cli, conceptlens.client\n"
        f"assert conceptlens.__file__.startswith({str(target)!r}), conceptlens.__file__\n"
        "web = {'fastapi', 'starlette', 'sqlalchemy', 'celery', 'uvicorn', 'backend', 'worker'}\n"
        "assert not web & set(sys.modules), web & set(sys.modules)\n"
        "assert importlib.util.find_spec('backend') is None\n"
        "assert importlib.util.find_spec('worker') is None\n"
        "sys.exit(conceptlens.cli.main(['serve']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert "not part of the installed library" in done.stderr
