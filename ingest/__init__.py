"""webvec's pure core: config, extraction, chunking, planning and the embedder/store seams.

Nothing in this package imports Prefect or Scrapy (tests/unit/test_layering.py checks it).
"""

__version__ = "0.1.0"
