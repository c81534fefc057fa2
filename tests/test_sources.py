"""sources.yaml parsing: typed objects, and every error names the file, the source and the key."""
import textwrap
from pathlib import Path

import pytest

from pipeline.errors import SourcesError
from pipeline.sources.config import load_sources

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    p = tmp_path / "sources.yaml"
    p.write_text(textwrap.dedent(text))
    return p


GOOD = """
sources:
  - name: demo
    kind: demo
    license: CC0
    attribution: me
    options: {seed: 3, size: small}
  - name: inria
    kind: inria
    location: /data/inria
    license: x
    attribution: y
    enabled: false
"""


def test_default_file_enables_only_demo():
    sources = load_sources(ROOT / "sources.yaml")
    enabled = [s.name for s in sources if s.enabled]
    assert enabled == ["demo"]
    assert {s.kind for s in sources} == {"demo", "xbd", "inria", "spacenet", "openaerialmap", "stac", "local",
                                         "opencities"}


def test_parses_typed_objects_with_defaults(tmp_path):
    demo, inria = load_sources(write(tmp_path, GOOD))
    assert demo.options["seed"] == 3 and demo.options["size"] == "small" and demo.enabled is True
    assert inria.enabled is False and inria.options["split"] == "train" and inria.scheme == "file"


@pytest.mark.parametrize(
    "mutation, message",
    [
        (("kind: inria", "kind: inira"), "sources.yaml: source 'inria': unknown kind 'inira'"),
        (("    location: /data/inria\n", ""), "sources.yaml: source 'inria': missing key 'location'"),
        (("location: /data/inria", "location: ftp://host/x"),
         "source 'inria': key 'location': unsupported scheme 'ftp'"),
        (("    license: x\n", ""), "source 'inria': missing key 'license'"),
        (("enabled: false", "enabled: maybe"), "source 'inria': key 'enabled' must be bool"),
        (("seed: 3", "seed: three"), "source 'demo': key 'options.seed' must be int"),
        (("size: small}", "size: small, colour: red}"), "source 'demo': unknown option 'options.colour'"),
        (("name: inria", "name: demo"), "source 'demo': duplicate source name"),
        (("    attribution: y\n", "    attribution: y\n    licence: z\n"), "source 'inria': unknown key 'licence'"),
    ],
)
def test_errors_name_file_source_and_key(tmp_path, mutation, message):
    old, new = mutation
    text = textwrap.dedent(GOOD)
    assert old in text
    with pytest.raises(SourcesError) as exc:
        load_sources(write(tmp_path, text.replace(old, new, 1)))
    assert message in str(exc.value)


def test_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(SourcesError, match=r"sources.yaml: invalid YAML at line \d+"):
        load_sources(write(tmp_path, "sources:\n  - name: [unclosed\n"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SourcesError, match="nope.yaml: cannot read"):
        load_sources(tmp_path / "nope.yaml")
