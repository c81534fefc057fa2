"""Stage 5, release: the manifest, the release writer, validation, STAC, GeoParquet and the changes report."""
