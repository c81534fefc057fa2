"""The index of a release: ``index.parquet`` (GeoParquet) and ``index.gpkg`` (GeoPackage), the same rows and
columns (geopandas + pyarrow / pyogrio, no Luigi here).

One row per image, in natural id order, geometry = the tile footprint in WGS 84 (EPSG:4326): the native
UTM rectangle with its corners transformed to lon/lat (:func:`pipeline.release.footprints.footprint_lonlat`, the same
polygon as the STAC item), with a GeoParquet 1.1 ``bbox`` covering column for fast spatial filtering.

Columns: ``id, split, upstream_split, region, country, country_code, continent, source, source_kind, license, gsd,
crs, width, height, acquired, image, label, sha256_image, sha256_label, share_1 .. share_8, share_unlabelled,
geometry, bbox``. ``upstream_split`` is the split of the benchmark the image comes from (a column only in a release
with such images, null for the others: :mod:`pipeline.sources.adapters.openearthmap`); ``image``/``label`` are paths
relative to the release folder; ``share_<c>`` is the fraction of the tile's pixels labelled with class ``c``
(``share_unlabelled`` those labelled 0), so the nine shares of a row sum to 1. ``acquired`` is a timestamp column
(Arrow ``timestamp[ns, tz=UTC]``): the acquisition time of the image (a date alone is midnight UTC), null where
unknown. Read it with ``geopandas.read_parquet("index.parquet")``.

The GeoPackage is there for GIS whose GDAL reads no Parquet: Debian's and Ubuntu's GDAL packages (the GDAL of their
QGIS) are built without Arrow, so ``ogrinfo index.parquet`` fails there while ``index.gpkg`` opens in every GDAL
since 2.0, QGIS and ArcGIS as a layer of footprints (table ``index``, EPSG:4326, with a spatial index; written as
GeoPackage 1.2, which GDAL 3.6 reads without warning; ``acquired`` an ISO 8601 UTC text, as GeoPackage stores
date-times; no ``bbox`` column: the R-tree is its spatial index).

Both files are deterministic for identical inputs and library versions (geopandas records its version in the
Parquet ``geo`` metadata; GDAL's GeoPackage timestamps are pinned, :data:`GPKG_DATE`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.constants import CLASS_IDS
from pipeline.dataset.ids import natural_key
from pipeline.release.footprints import footprints_lonlat
from pipeline.release.stac import acquired_time

INDEX = "index.parquet"
GPKG_INDEX = "index.gpkg"
#: The ``last_change`` GDAL writes into a GeoPackage's ``gpkg_contents`` (its ``OGR_CURRENT_DATE``; the write time
#: otherwise, which would make every build's file different).
GPKG_DATE = "2000-01-01T00:00:00.000Z"
STRING_COLUMNS = ("id", "split", "upstream_split", "region", "country", "country_code", "continent", "source",
                  "source_kind", "license", "crs", "image", "label", "sha256_image", "sha256_label")
SHARE_COLUMNS = tuple(f"share_{c}" for c in CLASS_IDS) + ("share_unlabelled",)


def index_frame(records: Sequence[dict[str, Any]]):
    """The GeoDataFrame of the index for manifest image records (see the module docstring)."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely
    from shapely.geometry import Polygon

    recs = sorted(records, key=lambda r: natural_key(str(r["id"])))
    # column by column (a dict per row and pandas' conversion of 5,000 of them cost more than the columns)
    data: dict[str, Any] = {k: [None if (v := r.get(k)) is None else str(v) for r in recs] for k in STRING_COLUMNS}
    sizes = [int(r["width"]) * int(r["height"]) for r in recs]
    data.update(gsd=[float(r["gsd"]) for r in recs], width=[int(r["width"]) for r in recs],
                height=[int(r["height"]) for r in recs], acquired=[acquired_time(r) for r in recs])
    for c in CLASS_IDS:
        data[f"share_{c}"] = [int((r.get("class_pixels") or {}).get(str(c), 0)) / total if total else 0.0
                              for r, total in zip(recs, sizes)]
    data["share_unlabelled"] = [int(r.get("unlabelled_pixels", 0)) / total if total else 0.0
                                for r, total in zip(recs, sizes)]
    rings = footprints_lonlat(recs)
    if rings and all(len(ring) == 5 for ring in rings):  # one vectorised call (5,000 polygons 0.15 -> 0.005 s)
        geoms = list(shapely.polygons(np.asarray(rings, dtype=float)))
    else:
        geoms = [Polygon(ring) for ring in rings]
    upstream = any(r.get("upstream_split") for r in recs)  # only beside a benchmark's images: else none
    columns = [c for c in STRING_COLUMNS[:10] if upstream or c != "upstream_split"] + [
        "gsd", "crs", "width", "height", "acquired", "image", "label", "sha256_image", "sha256_label", *SHARE_COLUMNS]
    df = pd.DataFrame({k: data[k] for k in columns}, columns=columns)
    for col in STRING_COLUMNS:
        if col in df:
            df[col] = df[col].astype("string")
    df["acquired"] = pd.to_datetime(df["acquired"], utc=True).astype("datetime64[ns, UTC]")
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"))


def write_index(out: Path, records: Sequence[dict[str, Any]], name: str = INDEX) -> list[str]:
    """Write the index of manifest image records to ``out / name`` and ``out / <name's stem>.gpkg`` (each
    atomically); returns their names."""
    from pipeline import atomic

    frame = index_frame(records)
    gpkg = str(Path(name).with_suffix(".gpkg"))
    with atomic.atomic_path(Path(out) / name) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd", write_covering_bbox=True)
    with atomic.atomic_path(Path(out) / gpkg) as tmp:
        _write_gpkg(frame, tmp)
    return [name, gpkg]


def _write_gpkg(frame: Any, path: Path) -> None:
    """``frame`` as the GeoPackage ``path`` (module docstring), GDAL's timestamps pinned meanwhile."""
    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_DATE})
    try:
        pyogrio.write_dataframe(frame, path, layer="index", driver="GPKG", VERSION="1.2")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})
