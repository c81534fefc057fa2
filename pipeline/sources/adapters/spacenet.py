"""SpaceNet buildings adapter (SpaceNet 1 Rio and SpaceNet 2 Vegas/Paris/Shanghai/Khartoum).

Layouts recognised anywhere below ``root`` (sorted, recursive):

* SpaceNet 2, per AOI folder ``AOI_<k>_<City>_<anything>`` (e.g. ``AOI_2_Vegas_Train``)::

      <aoi dir>/<product>/<product>_AOI_<k>_<City>_img<N>.tif        product = options.product
      <aoi dir>/geojson/buildings/buildings_AOI_<k>_<City>_img<N>.geojson
      <aoi dir>/landcover/landcover_AOI_<k>_<City>_img<N>.tif          (our 8-class labels, optional)

* SpaceNet 1 (scanned when ``options.product`` is the RGB product, ``RGB-PanSharpen`` or ``3band``)::

      <dir>/3band/3band_AOI_1_RIO_img<N>.tif
      <dir>/geojson/Geo_AOI_1_RIO_img<N>.geojson
      <dir>/landcover/landcover_AOI_1_RIO_img<N>.tif                   (optional)

* Only when neither is found: a *flat* folder, ``root/*.tif`` each with ``root/<stem>.geojson``; a
  folder holding exactly one image and one GeoJSON pairs them whatever their names (e.g. solaris'
  ``sample_geotiff.tif`` + ``geotiff_labels.geojson``).  See also :func:`spacenet_scene_from_files`.

Facts: images carry their own georeference (``georef=None``); footprints are GeoJSON in lon/lat
(``footprints_crs`` ``EPSG:4326`` for SN1/SN2; read from the file for flat folders),
``extra["footprints_format"] = "vector"``; chips without buildings have empty or invalid GeoJSON,
which :func:`pipeline.sources.footprints.load_footprints` reads as "no buildings".  RGB-PanSharpen pixels are
uint16 (11-bit) and must be stretched by the raster stage.  ``scene_id`` = ``aoi_<k>_<city>_img<N>``
(flat: the file stem); ``region_hint`` = the city as the gazetteer names its metro
(:data:`AOI_REGIONS`: ``Vegas`` -> ``las_vegas``, ``RIO`` -> ``rio_de_janeiro``, so a SpaceNet scene and any
other source's scene of the same metro share one region), else the AOI city lower-case (``Paris`` ->
``paris``); flat: none.  ``options.aois`` keeps only AOIs named by any of ``AOI_2_Vegas``, ``Vegas``,
``aoi_2`` or ``2`` (case-insensitive).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter, sorted_glob
from pipeline.sources.config import SourceConfig
from pipeline.sources.footprints import VECTOR, vector_crs

#: SpaceNet AOI city spellings -> the region name :func:`pipeline.dataset.regions.metro_city` gives the
#: metro (GeoNames' city name slugified); AOI cities not listed already spell it (paris, shanghai, khartoum).
AOI_REGIONS = {"vegas": "las_vegas", "rio": "rio_de_janeiro"}

_CHIP = r"AOI_(?P<k>\d+)_(?P<city>[A-Za-z]+)_img(?P<n>\d+)"


class SpaceNetAdapter(Adapter):
    """SpaceNet 1/2 building-chip layouts (see module docstring)."""

    kind: ClassVar[str] = "spacenet"
    title: ClassVar[str] = "SpaceNet"
    default_license: ClassVar[str] = "CC BY-SA 4.0"
    citation: ClassVar[str] = (
        "SpaceNet on Amazon Web Services (AWS), Datasets, The SpaceNet Catalog, "
        "https://spacenetchallenge.github.io/datasets/datasetHomePage.html; Van Etten et al., arXiv:1807.01232"
    )
    label_encoding: ClassVar[str] = "GeoJSON building polygons per chip, lon/lat; every feature is a building"
    default_product: ClassVar[str] = "RGB-PanSharpen"
    aoi_dir_re: ClassVar[re.Pattern[str]] = re.compile(r"^AOI_(?P<k>\d+)_(?P<city>[A-Za-z]+)(?:_.*)?$")
    sn2_footprints: ClassVar[str] = "geojson/buildings/buildings_AOI_{k}_{city}_img{n}.geojson"
    sn1_product: ClassVar[str] = "3band"
    sn1_image_re: ClassVar[re.Pattern[str]] = re.compile(rf"^3band_{_CHIP}\.tif$")
    sn1_footprints: ClassVar[str] = "geojson/Geo_AOI_{k}_{city}_img{n}.geojson"
    landcover: ClassVar[str] = "landcover/landcover_AOI_{k}_{city}_img{n}.tif"
    footprints_crs: ClassVar[str] = "EPSG:4326"
    rgb_products: ClassVar[tuple[str, ...]] = ("RGB-PanSharpen", "3band")

    # -- filtering ----------------------------------------------------------------------------
    @staticmethod
    def _aoi_wanted(aois: list[Any] | None, k: str, city: str) -> bool:
        if not aois:
            return True
        names = {f"aoi_{int(k)}_{city}".lower(), city.lower(), f"aoi_{int(k)}", str(int(k))}
        return any(str(a).strip().lower() in names for a in aois)

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        product = (source.options or {}).get("product") or self.default_product
        aois = (source.options or {}).get("aois")
        what = f" for aois {list(aois)}" if aois else ""
        return (
            f"no SpaceNet chips{what}: looked for AOI_<k>_<City>_*/{product}/{product}_AOI_<k>_<City>_img<N>.tif, "
            f"3band/3band_AOI_<k>_<City>_img<N>.tif and a flat folder of <stem>.tif + <stem>.geojson"
        )

    # -- scanning -----------------------------------------------------------------------------
    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        opts = source.options or {}
        product = opts.get("product") or self.default_product
        aois = opts.get("aois")
        chips: list[tuple[Path, re.Match[str], Path, str]] = []  # image, match, aoi dir, footprints template
        sn2_re = re.compile(rf"^{re.escape(product)}_{_CHIP}\.tif$")
        for img in sorted_glob(root, f"{product}_AOI_*_img*.tif", recursive=True):
            m = sn2_re.match(img.name)
            aoi_dir = img.parent.parent
            am = self.aoi_dir_re.match(aoi_dir.name)
            if not m or img.parent.name != product or not am:
                continue
            if am["k"] != m["k"] or am["city"].lower() != m["city"].lower():
                continue
            chips.append((img, m, aoi_dir, self.sn2_footprints))
        if product in self.rgb_products:
            for img in sorted_glob(root, f"{self.sn1_product}_AOI_*_img*.tif", recursive=True):
                m = self.sn1_image_re.match(img.name)
                if m and img.parent.name == self.sn1_product:
                    chips.append((img, m, img.parent.parent, self.sn1_footprints))
        chips.sort(key=lambda c: str(c[0]))
        if chips:
            for img, m, base, tmpl in chips:
                if self._aoi_wanted(aois, m["k"], m["city"]):
                    yield functools.partial(self.chip_scene, img, m, base, tmpl, source)
            return
        yield from self._scan_flat(root, source)

    def _scan_flat(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        images = sorted({*sorted_glob(root, "*.tif"), *sorted_glob(root, "*.tiff")})
        geojsons = sorted_glob(root, "*.geojson")
        for img in images:
            own = root / f"{img.stem}.geojson"
            label: Path | None = own
            if not own.is_file():
                label = geojsons[0] if len(images) == 1 and len(geojsons) == 1 else None
            yield functools.partial(spacenet_scene_from_files, img, label, source, adapter=self)

    def chip_scene(self, image: Path, m: re.Match[str], base: Path, template: str, source: SourceConfig) -> Scene:
        """Scene of one SN1/SN2 chip; ``base`` is the AOI folder, ``template`` the footprint path."""
        k, city, n = m["k"], m["city"], m["n"]
        fp = base / template.format(k=k, city=city, n=n)
        lc = base / self.landcover.format(k=k, city=city, n=n)
        has_fp = fp.is_file()
        return self.make_scene(
            source,
            f"aoi_{int(k)}_{city}_img{n}",
            image,
            footprints=fp if has_fp else None,
            footprints_crs=self.footprints_crs if has_fp else None,
            landcover=lc if lc.is_file() else None,
            region_hint=AOI_REGIONS.get(city.lower(), city.lower()),
            extra={
                "aoi": f"AOI_{int(k)}_{city}",
                "aoi_dir": base.name,
                "product": image.parent.name,
                **({"footprints_format": VECTOR} if has_fp else {}),
            },
        )


def spacenet_scene_from_files(
    image: str | Path,
    geojson: str | Path | None,
    source: SourceConfig,
    adapter: SpaceNetAdapter | None = None,
) -> Scene:
    """A SpaceNet scene from an explicit chip and its building GeoJSON (``None``: no footprints).

    ``scene_id`` is the safe image stem, ``footprints_crs`` the CRS the GeoJSON declares (EPSG:4326
    when it declares none or is empty/unreadable), ``region_hint`` ``options.region_override`` or none.
    """
    adapter = adapter or SpaceNetAdapter()
    image = Path(image)
    gj = Path(geojson) if geojson is not None else None
    scene = adapter.make_scene(
        source,
        image.stem,
        image,
        footprints=gj,
        footprints_crs=vector_crs(gj) if gj is not None else None,
        region_hint=None,
        extra={"footprints_format": VECTOR} if gj is not None else {},
    )
    return adapter._finish(scene, source)
