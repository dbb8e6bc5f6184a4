"""The configuration in memory: its data without the node tree (same data, same line numbers on problems),
and the key sets its models share."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.config import load_config
from agent.kernel.errors import ConfigError
from agent.kernel.yamlfile import LazyTree, line_of, read_yaml_data, read_yaml_mapping

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
    assert copied.count == 7 and copied.model_fields_set == {"name", "site", "address", "count"}
    assert a.model_fields_set == b.model_fields_set == {"name", "site", "address"}
