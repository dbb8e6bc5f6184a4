"""The configuration in memory: its data without the node tree (same data, same line numbers on problems),
the key sets its models share, and libyaml read alike with the pure-Python loader where it is used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import load_config
from agent.kernel import yamlfile
from agent.kernel.errors import ConfigError
from agent.kernel.yamlfile import LazyTree, line_of, read_yaml_data, read_yaml_mapping
from collectors.probes.icmp import IcmpTarget

ROOT = Path(__file__).resolve().parents[2]

TEXT = """\
agent:
  interval: 15s
anchors:
  shared: &shared {count: 3, when: 2026-12-02}
targets:
  icmp:
    - {name: a, site: s, address: 127.0.0.1, extra: *shared}
    - name: b
      site: s
      address: 127.0.0.2
      extra: *shared
"""


def test_data_is_an_exact_copy_with_aliases_still_shared(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(TEXT)
    kept, _root = read_yaml_mapping(path)
    data, tree = read_yaml_data(path)
    assert data == kept
    items = data["targets"]["icmp"]
    assert items[0]["extra"] is items[1]["extra"] is data["anchors"]["shared"]
    assert isinstance(tree, LazyTree)


@pytest.mark.parametrize(
    "loc",
    [("agent", "interval"), ("targets", "icmp", 1, "address"), ("targets", "icmp", 0), ("nope", "x"), ()],
)
def test_lines_from_the_text_are_the_lines_of_the_tree(tmp_path: Path, loc: tuple[int | str, ...]) -> None:
    path = tmp_path / "c.yml"
    path.write_text(TEXT)
    _kept, root = read_yaml_mapping(path)
    _data, tree = read_yaml_data(path)
    assert line_of(tree, loc) == line_of(root, loc)


def test_problems_of_a_loaded_file_keep_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "giamsat.yml"
    path.write_text(
        textwrap.dedent(
            """\
            sites:
              - {id: tinh, name: Tinh, level: province}
            targets:
              icmp:
                - {name: a, site: tinh, address: 127.0.0.1}
                - name: b
                  site: nowhere
                  address: 127.0.0.2
                - {name: c, site: tinh, address: 127.0.0.3, count: lots}
            """
        )
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    got = [str(p) for p in exc.value.problems]
    assert any(p.startswith(f"{path}:9: targets.icmp[2].count: ") for p in got), got
    assert f"{path}:7: targets.icmp[1].site: unknown site 'nowhere'" in got


def test_models_given_the_same_keys_share_their_key_set_and_copies_stay_apart(tmp_path: Path) -> None:
    path = tmp_path / "giamsat.yml"
    path.write_text(
        "sites:\n  - {id: tinh, name: Tinh, level: province}\ntargets:\n  icmp:\n"
        "    - {name: a, site: tinh, address: 127.0.0.1}\n"
        "    - {name: b, site: tinh, address: 127.0.0.2}\n"
        "    - {name: c, site: tinh, address: 127.0.0.3, count: 5}\n"
    )
    a, b, c = load_config(path).config.targets_of("icmp")
    assert a.model_fields_set == b.model_fields_set == {"name", "site", "address"}
    assert a.model_fields_set is b.model_fields_set
    assert c.model_fields_set == {"name", "site", "address", "count"}
    copied = a.model_copy(update={"count": 7})
    assert isinstance(copied, IcmpTarget)
    assert copied.count == 7 and copied.model_fields_set == {"name", "site", "address", "count"}
    assert a.model_fields_set == b.model_fields_set == {"name", "site", "address"}


#: What configurations hold, and what goes wrong in them: both loaders must read them alike.
LOADER_CASES = [
    TEXT,
    "a: 1\nb: [1, 2.5, -3e2, 0x10, 0o7, .inf, ~, true, yes, 'no', \"x\\ty\"]\nc: 2026-12-02\n",
    "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
    "text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
    "name: Xã Đông Hòa\nquoted: 'it''s'\nempty:\n",
    "a: 1\nb: 2\na: 3\n",  # a key given twice
    "a: [1, 2\nb: 3\n",  # unclosed flow sequence
    "a: 1\n  b: 2\n",  # bad indentation
    "a: *missing\n",  # unknown alias
    "targets: " + "[" * 2000 + "]" * 2000 + "\n",  # deeper than libyaml's own limit
    "- 1\n- 2\n",  # not a mapping
    "? [1, 2]\n: unhashable key\n",
]


def _read_all(path: Path) -> tuple[object, list[str], list[int | None]]:
    try:
        data, root = read_yaml_mapping(path)
    except ConfigError as exc:
        return None, [str(p) for p in exc.problems], []
    lines = [
        line_of(root, loc) for loc in (("a",), ("b", 3), ("targets", "icmp", 1, "address"), ("derived", "y"))
    ]
    return data, [], lines


@pytest.mark.parametrize("text", LOADER_CASES)
def test_libyaml_and_the_python_loader_read_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    path = tmp_path / "c.yml"
    path.write_text(text, encoding="utf-8")
    assert yamlfile.libyaml_loader() is not None  # the wheel's libyaml: the fast path is the one tested
    fast = _read_all(path)
    monkeypatch.setattr(yamlfile, "libyaml_loader", lambda: None)
    assert _read_all(path) == fast


def test_a_libyaml_without_a_nesting_limit_is_not_used(tmp_path: Path) -> None:
    """Debian's python3-yaml runs on Debian's libyaml 0.2.5, whose composer recurses in C without a
    limit: a file nested 200 000 levels deep crashed a process reading it with CSafeLoader."""
    debian = Path("/usr/lib/python3/dist-packages")
    assert (debian / "yaml" / "cyaml.py").exists(), "scripts/test.sh installs python3-yaml"
    shadow = tmp_path / "site"
    shadow.mkdir()
    for name in ("yaml", "_yaml"):
        (shadow / name).symlink_to(debian / name)
    deep = tmp_path / "deep.yml"
    deep.write_text("agent: " + "[" * 200_000 + "\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(shadow)!r})
        import yaml
        assert yaml.__file__.startswith({str(shadow)!r}) and yaml.__with_libyaml__, yaml.__file__
        from pathlib import Path
        from agent.kernel.errors import ConfigError
        from agent.kernel.yamlfile import libyaml_loader, read_yaml_mapping
        print(libyaml_loader())
        try:
            read_yaml_mapping(Path({str(deep)!r}))
        except ConfigError as exc:
            print(exc.problems[0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    loader, problem = done.stdout.splitlines()
    assert loader == "None"
    assert problem.endswith("nested more than 64 levels deep"), problem
