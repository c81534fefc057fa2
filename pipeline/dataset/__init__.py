"""Stage 4, dataset: the tile pool, regions, per-region selection, splits, statistics and release history."""
