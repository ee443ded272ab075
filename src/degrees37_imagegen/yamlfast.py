"""Reading YAML fast and safely: libyaml's C parser when PyYAML has it, and no alias bomb.

:func:`load_yaml` reads a document with :data:`SafeLoader` (``yaml.CSafeLoader`` when
available, else ``yaml.SafeLoader``: only plain data, never objects) and returns the data
and its node tree (for line numbers). Before building the data it measures what the
document's aliases expand to, and refuses a document whose aliases multiply it (a
"billion laughs") or refer to themselves, with a :class:`yaml.MarkedYAMLError` whose
``problem`` says so and whose ``problem_mark`` is where: callers report it like any other
YAML error.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from typing import Any

import yaml

__all__ = ["MAX_EXPANDED_NODES", "SafeLoader", "check_aliases", "load_yaml", "paused_gc"]

try:  # libyaml's parser (C, about ten times faster) when PyYAML was built with it
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

#: The most nodes a document may expand to through its aliases: this many, or ten times
#: the nodes it holds, whichever is more. Anchors and aliases used for shared defaults stay
#: far below; a "billion laughs" of nine lines expands to a billion.
MAX_EXPANDED_NODES = 1_000_000
_MAX_RATIO = 10

# An alias token: '*name' after a space, a flow indicator or at a line's start. Documents
# without one (almost all) skip the measuring walk.
_ALIAS = re.compile(r"(?:^|[\s\[{,])\*[^\s,\[\]{}]", re.MULTILINE)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a big document's objects are made.

    Reading a file makes a million small objects and no cycles (an alias inside itself is
    refused), yet each of them counts towards a collection that walks every live object:
    paused, a 20 MB file reads in about half the time. Reference counting still frees
    everything; the collector resumes (if it ran before) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_yaml(text: str, loader: type[SafeLoader] = SafeLoader) -> tuple[Any, Any]:
    """``(data, node)`` of the one YAML document in ``text`` (``(None, None)`` if empty).

    ``loader`` is :data:`SafeLoader` or a subclass of it (with its own constructors).
    Raises :class:`yaml.YAMLError`, also for aliases that expand too far or into themselves
    (see :func:`check_aliases`).
    """
    reader = loader(text)
    try:
        with paused_gc():
            node = reader.get_single_node()
            if node is None:
                return None, None
            if "*" in text and _ALIAS.search(text):
                check_aliases(node)
            return reader.construct_document(node), node
    finally:
        reader.dispose()


def check_aliases(root: yaml.Node) -> int:
    """The number of nodes ``root`` expands to, counting each alias as a copy of its anchor.

    Raises :class:`yaml.MarkedYAMLError` when that is more than :data:`MAX_EXPANDED_NODES`
    and ten times the distinct nodes (marking the first collection that goes over), or when
    an alias is inside its own anchor (which would expand forever). Walks each distinct node
    once, without recursion.
    """
    limit = max(MAX_EXPANDED_NODES, _MAX_RATIO * _count_distinct(root))
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path: an alias to one of them is a loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > limit:
                raise _refused(
                    f"aliases expand this to more than {limit:,} values: refused as an alias "
                    "bomb ('billion laughs')",
                    node,
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise _refused("an alias refers to a node that contains it", node)
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _count_distinct(root: yaml.Node) -> int:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(_children(node))
    return len(seen)


def _refused(problem: str, node: yaml.Node) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=node.start_mark)
