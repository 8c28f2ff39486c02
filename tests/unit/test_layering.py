"""The pure core imports neither Prefect nor Scrapy (DESIGN.md: packages and their rooms)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import ingest


def test_ingest_imports_neither_prefect_nor_scrapy() -> None:
    modules = [m.name for m in pkgutil.walk_packages(ingest.__path__, "ingest.")]
    assert "ingest.batch" in modules and "ingest.run" in modules and "ingest.stores.chroma" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('prefect', 'scrapy', 'twisted'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"ingest pulled in: {result.stdout.strip()}"
