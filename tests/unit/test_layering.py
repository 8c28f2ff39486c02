"""The pure core imports neither Prefect nor Scrapy nor Dask (DESIGN.md: packages and their rooms)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import ingest


def test_ingest_imports_neither_prefect_nor_scrapy_nor_dask() -> None:
    modules = [m.name for m in pkgutil.walk_packages(ingest.__path__, "ingest.")]
    assert "ingest.batch" in modules and "ingest.run" in modules and "ingest.stores.chroma" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "banned = ('prefect', 'scrapy', 'twisted', 'dask', 'distributed')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in banned)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"ingest pulled in: {result.stdout.strip()}"


def _imported_by(package: str, names: tuple[str, ...]) -> list[str]:
    """Modules whose top-level package is in ``names`` that importing every module of ``package``
    pulls in (in a fresh interpreter)."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        f"for m in pkgutil.walk_packages(pkg.__path__, {package!r} + '.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in {names!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in result.stdout.strip().split(",") if m]


def test_flows_import_no_scrapy_or_twisted() -> None:
    # flows/ starts the spider only as a subprocess (spiders.process, spiders.run: no Scrapy import).
    assert _imported_by("flows", ("scrapy", "twisted")) == []


def test_ingest_imports_neither_flows_nor_spiders() -> None:
    assert _imported_by("ingest", ("flows", "spiders")) == []


# One fresh interpreter per core module (~20 s): the full tier's.
@pytest.mark.slow
def test_no_import_cycles_in_the_core() -> None:
    # Every core module imports on its own, first, in a fresh interpreter (a cycle shows up as an
    # ImportError or an AttributeError on a partly initialised module).
    modules = [m.name for m in pkgutil.walk_packages(ingest.__path__, "ingest.")]
    code = "import importlib, sys\nimportlib.import_module(sys.argv[1])\n"
    for name in modules:
        result = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr.strip().splitlines()[-1:]}"
