"""End to end through Luigi with the real source kinds fetched from real loopback servers:
xBD as an archive over HTTP (cut mid-transfer once, resumed), SpaceNet from moto's S3 server, Inria and a
plain GeoTIFF folder read in place.  The scenes are the demo generator's, in each upstream's layout."""
import hashlib
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import boto3
import luigi
import luigi.configuration
import yaml

import tasks  # noqa: F401  (registers the tasks)
from oem_demo.generate import generate_demo
from pipeline.release.validate.report import validate_release
from tests.loopback import LoopbackServer

BUCKET = "spacenet-dataset"
PREFIX = "spacenet/SN2_buildings/train/"


def _tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                tf.add(p, arcname=str(p.relative_to(folder)), recursive=False)
    return buf.getvalue()


def test_release_from_http_s3_and_local_sources(tmp_path, moto_s3, monkeypatch):
    gen = tmp_path / "upstream"
    generate_demo(gen, seed=11, size="small")

    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ACL="public-read")
    for p in sorted((gen / "spacenet").rglob("*")):
        if p.is_file():
            key = PREFIX + str(p.relative_to(gen / "spacenet"))
            s3.put_object(Bucket=BUCKET, Key=key, Body=p.read_bytes(), ACL="public-read")

    archive = _tar_gz(gen / "xbd")
    with LoopbackServer() as http:
        http.files["/xbd/train_images_labels_targets.tar.gz"] = archive
        http.queue("/xbd/train_images_labels_targets.tar.gz", "cut")  # first transfer stops at 50 %
        sources = tmp_path / "sources.yaml"
        sources.write_text(f"""
sources:
  - name: xbd
    kind: xbd
    location: {http.url('/xbd/train_images_labels_targets.tar.gz')}
    license: CC BY-NC-SA 4.0
    attribution: xBD (Gupta et al. 2019)
    options:
      sha256: {{train_images_labels_targets.tar.gz: {hashlib.sha256(archive).hexdigest()}}}
  - name: spacenet
    kind: spacenet
    location: s3://{BUCKET}/{PREFIX}
    license: CC BY-SA 4.0
    attribution: SpaceNet on AWS
    options: {{endpoint_url: "{moto_s3}"}}
  - name: inria
    kind: inria
    location: {gen / 'inria'}
    license: Inria Aerial Image Labeling terms
    attribution: Maggiori et al. 2017
  - name: folder
    kind: local
    location: {gen / 'local'}
    license: CC BY 4.0
    attribution: a local folder
""")
        cfg = luigi.configuration.get_config()
        cfg.set("PipelineConfig", "data_dir", str(tmp_path / "data"))
        cfg.set("PipelineConfig", "sources_file", str(sources))
        cfg.set("PipelineConfig", "release", "sources")
        cfg.set("PipelineConfig", "split_trials", "100")
        cfg.set("PipelineConfig", "allow_private_networks", "true")  # the loopback and moto servers
        from tasks import BuildRelease

        try:
            assert luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
            xbd_requests = http.requests_for("/xbd/train_images_labels_targets.tar.gz")
            scene_work = sorted((tmp_path / "data" / "work" / "scenes").rglob("*"))
            # the terms of every source corrected: fetched and catalogued again, nothing downloaded again (the new
            # raw folders start as links of the earlier ones) and no scene prepared, tiled, labelled or counted again
            sources.write_text(sources.read_text().replace("license: CC BY", "license: CC0 BY")
                               .replace("attribution: ", "attribution: corrected, "))
            cfg.set("PipelineConfig", "release", "corrected")
            assert luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
            assert http.requests_for("/xbd/train_images_labels_targets.tar.gz") == xbd_requests
            # the fetch code changed (an edit to the fetch stage or a module it imports): every source gets a new raw
            # folder, yet what the new code asks for again is offered from the earlier folder file by file,
            # checked, not downloaded again (archives are extracted again), and the scenes' work is kept
            from tasks import versions

            real_one, real_all = versions.code_version, versions.code_versions
            monkeypatch.setattr(versions, "code_version", lambda st: "f" * 12 if st == "fetch" else real_one(st))
            monkeypatch.setattr(versions, "code_versions", lambda: {**real_all(), "fetch": "f" * 12})
            cfg.set("PipelineConfig", "release", "new-fetch-code")
            assert luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
            monkeypatch.undo()
        finally:
            cfg.remove_option("PipelineConfig", "allow_private_networks")
        assert http.requests_for("/xbd/train_images_labels_targets.tar.gz") == xbd_requests
    newest = {name: max((tmp_path / "data" / "raw").glob(f"{name}-*/fetch.json"), key=lambda r: r.stat().st_mtime)
              for name in ("xbd", "spacenet")}
    assert all(json.loads(r.read_text())["made_by"]["fetch_code"] == "f" * 12 for r in newest.values())
    archive_copy = newest["xbd"].parent / "files" / "downloads" / "train_images_labels_targets.tar.gz"
    assert archive_copy.stat().st_nlink == 3  # the first folder's download, linked twice
    spacenet_files = [p for p in (newest["spacenet"].parent / "files").rglob("*") if p.is_file()]
    assert spacenet_files and all(p.stat().st_nlink == 3 for p in spacenet_files)
    assert validate_release(tmp_path / "data" / "releases" / "new-fetch-code") == []
    # and no scene was prepared, tiled, labelled or counted again: the same records and bytes (tasks.scenekey)
    assert sorted((tmp_path / "data" / "work" / "scenes").rglob("*")) == scene_work
    corrected = tmp_path / "data" / "releases" / "corrected"
    assert validate_release(corrected) == []
    images = json.loads((corrected / "manifest.json").read_text())["images"]
    assert {im["source"]: im["license"] for im in images}["spacenet"] == "CC0 BY-SA 4.0"
    assert all(im["attribution"].startswith("corrected, ") for im in images)
    for name in ("xbd", "spacenet"):
        provenance = json.loads((corrected / "provenance" / f"{name}.json").read_text())
        assert all(f["attribution"].startswith("corrected, ") for f in provenance["files"]), name
        old, new, _ = sorted((tmp_path / "data" / "raw").glob(f"{name}-*/fetch.json"),
                             key=lambda r: r.stat().st_mtime)  # the first, the corrected, the new fetch code's
        assert {f["sha256"] for f in json.loads(new.read_text())["files"]} == \
            {f["sha256"] for f in json.loads(old.read_text())["files"]}
        assert all(p.stat().st_nlink >= 2 for p in (new.parent / "files").rglob("*") if p.is_file()), name

    assert len(xbd_requests) == 2  # cut once, then resumed (not restarted)
    assert "Range" not in xbd_requests[0]["headers"]
    assert xbd_requests[1]["headers"]["Range"] == f"bytes={len(archive) // 2}-"
    rel = tmp_path / "data" / "releases" / "sources"
    assert validate_release(rel) == []
    manifest = json.loads((rel / "manifest.json").read_text())
    by_source = {}
    for im in manifest["images"]:
        by_source.setdefault(im["source"], set()).add(im["license"])
    assert set(by_source) == {"xbd", "spacenet", "inria", "folder"}
    assert by_source["xbd"] == {"CC BY-NC-SA 4.0"} and by_source["spacenet"] == {"CC BY-SA 4.0"}
    kinds = {im["source_kind"] for im in manifest["images"]}
    assert kinds == {"xbd", "spacenet", "inria", "local"}
    # the release card says which images are under which licence and what each asks (pipeline.release.card)
    card = (rel / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "other"  # no one licence covers the release
    assert "This release mixes 4 licences" in card
    for licence, n in Counter(im["license"] for im in manifest["images"]).items():
        shares = Counter(im["source"] for im in manifest["images"] if im["license"] == licence)
        assert f"### {licence}\n\n{n} image{'s' if n > 1 else ''}, from " + ", ".join(
            f"`{s}` ({k})" for s, k in sorted(shares.items())) + ". Terms: " in card
    assert "non-commercial use only" in card.split("### CC BY-NC-SA 4.0")[1].split("###")[0]
    assert "does not recognise" in card.split("### Inria Aerial Image Labeling terms")[1].split("###")[0]
    from pipeline.sources.adapters import get_adapter

    cited = _section_of(card, "## Citation")
    for s in manifest["sources"]:  # the kinds' publications, each with its source; a local folder has none
        citation = get_adapter(s["kind"]).citation
        assert s.get("citation", "") == citation and (citation == "" or f"- {citation} (source `{s['name']}`)" in cited)
    assert sum(1 for s in manifest["sources"] if s.get("citation")) == 3  # xbd, spacenet, inria
    collection = json.loads((rel / "stac" / "collection.json").read_text())  # mixed licences: STAC's "other"
    assert collection["license"] == "other" and len(collection["summaries"]["license"]) == 4
    assert [(link["href"], link["type"]) for link in collection["links"] if link["rel"] == "license"] == [
        ("../README.md", "text/markdown")]  # the terms: the release card, beside stac/
    corrected_card = (corrected / "README.md").read_text()
    assert "### CC0 BY-SA 4.0" in corrected_card and "### CC BY-SA 4.0" not in corrected_card
    fetch_record = min((tmp_path / "data" / "raw").glob("spacenet-*/fetch.json"), key=lambda r: r.stat().st_mtime)
    fetched = json.loads(fetch_record.read_text())
    assert all(f["url"].startswith("s3://") and len(f["sha256"]) == 64 for f in fetched["files"])
    rejects = (rel / "rejects.csv").read_text()
    assert "coarser than 0.5 m" in rejects


def _section_of(card: str, title: str) -> str:
    return card.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]
