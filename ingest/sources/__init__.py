"""Crawl sources besides the spider: pages that another crawler already fetched and extracted.

Each is a :class:`ingest.run.CrawlSource`: it writes :class:`~ingest.state.FetchedPage` rows into the
run's page store, and the run processes them in batches like the spider's, with the same sync
semantics (hash skipping, stale/gone rules under the coverage guard, versions). See
:mod:`ingest.sources.apify`.
"""
