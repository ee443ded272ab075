from __future__ import annotations

import itertools

import pytest
import yaml

from degrees37_imagegen.yamlfast import MAX_EXPANDED_NODES, SafeLoader, check_aliases, load_yaml


def laughs(levels: int, width: int = 10) -> str:
    lines = ["a: &a [" + ", ".join(['"lol"'] * width) + "]"]
    names = "abcdefghijklmnop"
    for prev, name in itertools.pairwise(names[:levels]):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_uses_libyaml_when_pyyaml_has_it() -> None:
    assert SafeLoader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def test_data_and_nodes() -> None:
    data, node = load_yaml("jobs:\n  - a\n  - {prompt: b}\n")
    assert data == {"jobs": ["a", {"prompt": "b"}]}
    assert isinstance(node, yaml.MappingNode)
    assert load_yaml("") == (None, None)


def test_a_billion_laughs_is_refused_where_it_goes_over() -> None:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        load_yaml(laughs(9))
    assert info.value.problem == (
        f"aliases expand this to more than {MAX_EXPANDED_NODES:,} values: refused as an "
        "alias bomb ('billion laughs')"
    )
    assert info.value.problem_mark is not None
    assert info.value.problem_mark.line + 1 == 6  # f: 1,111,111 nodes


def test_small_expansions_are_counted_and_kept() -> None:
    data, node = load_yaml(laughs(3))
    assert len(data["c"]) == 10
    assert data["c"][0][0] == ["lol"] * 10
    assert check_aliases(node) == 1 + 3 + 11 + 111 + 1111  # root, 3 keys, a, b, c


def test_an_alias_inside_its_anchor_is_refused() -> None:
    for text in ("a: &a [1, *a]\n", "a: &a {b: {c: *a}}\n"):
        with pytest.raises(yaml.MarkedYAMLError, match="an alias refers to a node that contains"):
            load_yaml(text)


def test_text_without_aliases_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    import degrees37_imagegen.yamlfast as yamlfast

    def fail(root: yaml.Node) -> int:
        raise AssertionError("walked")

    monkeypatch.setattr(yamlfast, "check_aliases", fail)
    assert load_yaml("prompt: 'a*bold*move'\nx: 2*3\n")[0] == {"prompt": "a*bold*move", "x": "2*3"}


def test_the_collector_is_paused_while_reading_and_resumed_after() -> None:
    import gc

    from degrees37_imagegen.yamlfast import paused_gc

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: [1, 2\n")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # it stays as the caller had it
    finally:
        gc.enable()
