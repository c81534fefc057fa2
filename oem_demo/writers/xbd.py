"""The xBD layout: ``xbd/train/{images,labels,landcover}/<disaster>_<8-digit id>_pre_disaster.*`` -- an RGB PNG
without georeference, the label JSON (``features.lng_lat`` / ``features.xy`` WKT, same order and uid) and a
single-band index PNG (0..8)."""
from __future__ import annotations

import cv2

from oem_demo.writers.common import SceneFile, apply_affine, json_text, track, uid, wkt, write_png
from pipeline.atomic import write_text


def _metadata(f: SceneFile, stem: str) -> dict:
    sc, rng = f.sc, f.rng
    return {"sensor": "DEMO", "provider_asset_type": "DEMO", "gsd": sc.gsd,
            "capture_date": sc.capture_date[:14] + f"{int(rng.integers(0, 60)):02d}" + sc.capture_date[16:],
            "off_nadir_angle": round(float(rng.uniform(5, 25)), 6),
            "pan_resolution": round(sc.gsd / 1.0, 6),
            "sun_azimuth": round(float(rng.uniform(100, 250)), 6),
            "sun_elevation": round(float(rng.uniform(35, 75)), 6),
            "target_azimuth": round(float(rng.uniform(0, 360)), 6),
            "disaster": sc.name, "disaster_type": sc.disaster_type,
            "width": 1024, "height": 1024, "original_width": 1024, "original_height": 1024,
            "img_name": f"{stem}.png", "id": uid(rng), "catalog_id": rng.bytes(8).hex().upper()}


def write(f: SceneFile) -> str:
    sc = f.sc
    stem = f"{sc.name}_{sc.number + 3 * f.index:08d}_pre_disaster"
    base = f.root / "xbd" / "train"
    rgb = cv2.convertScaleAbs(f.img)
    write_png(track(f.written, base / "images" / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    write_png(track(f.written, base / "landcover" / f"{stem}.png"), f.label)
    lng, xy = [], []
    for r in f.rects_px:
        props = {"feature_type": "building", "uid": uid(f.rng)}
        xy.append({"wkt": wkt(r, 6), "properties": dict(props)})
        lng.append({"wkt": wkt(apply_affine(f.tf, r), 10), "properties": dict(props)})
    meta = _metadata(f, stem)
    write_text(track(f.written, base / "labels" / f"{stem}.json"),
               json_text({"features": {"lng_lat": lng, "xy": xy}, "metadata": meta}))
    return f"xbd/train/images/{stem}.png"
