"""Stage 1, sources: ``sources.yaml``, fetching raw data, and the adapters that turn it into Scene records."""
