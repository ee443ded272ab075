"""A small validator for the part of JSON Schema that InvokeAI's ``openapi.json`` uses.

It checks enqueue requests (and fixture answers) against the real schemas: ``$ref``,
``type``, ``enum``, ``const``, ``anyOf``/``oneOf``/``allOf`` (the node union is dispatched
on the ``type`` constant, like pydantic's tagged union), object ``properties``/``required``/
``additionalProperties``, array ``items``/``minItems``/``maxItems``/``uniqueItems``, and the
number and string bounds. Two things are stricter than the server on purpose: an unknown
property is an error even where the schema allows extras silently (pydantic ignores them, so
a typo would be lost), and graphs get the checks the server makes after parsing (node ids,
edges, cycles, batch data) plus one it leaves for run time (required inputs).

Written for the tests rather than adding a dependency: ``jsonschema`` would need its own
handling of the OpenAPI ``$ref`` layout and still not know graph rules.
"""

from __future__ import annotations

import math
import re
from functools import cached_property
from typing import Any

__all__ = ["OpenAPISchema"]

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


class OpenAPISchema:
    """Validates values against the component schemas of one ``openapi.json``."""

    def __init__(self, document: dict[str, Any], *, strict: bool = True) -> None:
        self.document = document
        self.schemas: dict[str, Any] = document["components"]["schemas"]
        self.strict = strict

    # -- JSON Schema ---------------------------------------------------------------------

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` to the schema it names."""
        while "$ref" in schema:
            ref = schema["$ref"]
            prefix = "#/components/schemas/"
            assert ref.startswith(prefix), ref
            schema = self.schemas[ref[len(prefix) :]]
        return schema

    def validate(self, value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
        """Every way ``value`` breaks ``schema``, as ``path: problem`` lines."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return self._any_of(value, schema["anyOf"], path)
        if "oneOf" in schema:
            return self._one_of(value, schema["oneOf"], path)
        errors: list[str] = []
        for sub in schema.get("allOf", []):
            errors += self.validate(value, sub, path)
        if "const" in schema and value != schema["const"]:
            return [f"{path}: must be {schema['const']!r}, got {value!r}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{path}: {value!r} is not one of {schema['enum']}"]
        kind = schema.get("type")
        if kind is not None:
            kinds = kind if isinstance(kind, list) else [kind]
            if not any(_is_type(value, k) for k in kinds):
                return [f"{path}: expected {'/'.join(kinds)}, got {type(value).__name__}"]
        if isinstance(value, dict):
            errors += self._object(value, schema, path)
        elif isinstance(value, list):
            errors += self._array(value, schema, path)
        elif isinstance(value, str):
            errors += self._string(value, schema, path)
        elif _is_type(value, "number"):
            errors += self._number(value, schema, path)
        return errors

    def _any_of(self, value: Any, options: list[dict[str, Any]], path: str) -> list[str]:
        results = [self.validate(value, option, path) for option in options]
        if any(not r for r in results):
            return []
        return min(results, key=len)

    def _one_of(self, value: Any, options: list[dict[str, Any]], path: str) -> list[str]:
        # InvokeAI's unions are tagged: pick the branch whose "type" constant matches.
        tag = value.get("type") if isinstance(value, dict) else None
        tagged = {}
        for option in options:
            const = self.resolve(option).get("properties", {}).get("type", {}).get("const")
            if const is not None:
                tagged[const] = option
        if tag is not None and len(tagged) == len(options) and len(set(tagged)) == len(options):
            if tag not in tagged:
                return [f"{path}: unknown type {tag!r}"]
            return self.validate(value, tagged[tag], path)
        results = [self.validate(value, option, path) for option in options]
        passing = sum(1 for r in results if not r)
        if passing == 1:
            return []
        if passing > 1:
            return [f"{path}: matches {passing} schemas of a oneOf"]
        return min(results, key=len)

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
        errors = []
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value and name != "output_meta":  # output_meta: pydantic quirk
                errors.append(f"{path}: missing required {name!r}")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            where = f"{path}.{name}"
            if name in props:
                errors += self.validate(item, props[name], where)
            elif isinstance(extra, dict):
                errors += self.validate(item, extra, where)
            elif extra is False or (extra is None and props and self.strict):
                errors.append(f"{where}: unknown property")
        return errors

    def _array(self, value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
        errors = []
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            errors.append(f"{path}: items are not unique")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += self.validate(item, schema["items"], f"{path}[{i}]")
        return errors

    def _string(self, value: str, schema: dict[str, Any], path: str) -> list[str]:
        errors = []
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']!r}")
        return errors

    def _number(self, value: float, schema: dict[str, Any], path: str) -> list[str]:
        errors = []
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: {value} <= exclusive minimum {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{path}: {value} >= exclusive maximum {schema['exclusiveMaximum']}")
        multiple = schema.get("multipleOf")
        if multiple and not math.isclose(value / multiple, round(value / multiple)):
            errors.append(f"{path}: {value} is not a multiple of {multiple}")
        return errors

    def validate_component(self, value: Any, name: str) -> list[str]:
        """Every way ``value`` breaks the component schema ``name``."""
        return self.validate(value, {"$ref": f"#/components/schemas/{name}"})

    # -- graphs --------------------------------------------------------------------------

    @cached_property
    def node_schemas(self) -> dict[str, dict[str, Any]]:
        """Invocation schema by node type, from the Graph's node union."""
        union = self.schemas["Graph"]["properties"]["nodes"]["additionalProperties"]["oneOf"]
        out = {}
        for option in union:
            schema = self.resolve(option)
            out[schema["properties"]["type"]["const"]] = schema
        return out

    def validate_enqueue(self, body: Any) -> list[str]:
        """Every problem of an ``enqueue_batch`` body: the schema, then the graph rules."""
        errors = self.validate_component(body, "Body_enqueue_batch")
        if errors:
            return errors
        batch = body["batch"]
        return self.check_graph(batch["graph"], batch.get("data"))

    def check_graph(self, graph: dict[str, Any], data: Any = None) -> list[str]:
        """The rules InvokeAI applies to a parsed graph, and required inputs."""
        errors: list[str] = []
        nodes: dict[str, Any] = graph.get("nodes", {})
        for key, node in nodes.items():
            if node.get("id") != key:
                errors.append(f"node {key!r}: id {node.get('id')!r} does not match its key")
        provided: set[tuple[str, str]] = set()
        incoming: dict[tuple[str, str], int] = {}
        for i, edge in enumerate(graph.get("edges", [])):
            src, dst = edge["source"], edge["destination"]
            where = f"edge {i} ({src['node_id']}.{src['field']} -> {dst['node_id']}.{dst['field']})"
            if src["node_id"] not in nodes or dst["node_id"] not in nodes:
                errors.append(f"{where}: unknown node")
                continue
            src_schema = self.node_schemas[nodes[src["node_id"]]["type"]]
            outputs = self.resolve(src_schema["output"]).get("properties", {})
            if src["field"] not in outputs:
                errors.append(f"{where}: the source has no output {src['field']!r}")
            dst_schema = self.node_schemas[nodes[dst["node_id"]]["type"]]
            field = dst_schema["properties"].get(dst["field"])
            if field is None:
                errors.append(f"{where}: the destination has no input {dst['field']!r}")
            elif field.get("input") == "direct":
                errors.append(f"{where}: {dst['field']!r} takes no connection")
            elif src["field"] in outputs and not self._compatible(outputs[src["field"]], field):
                errors.append(f"{where}: the source and destination types do not match")
            target = (dst["node_id"], dst["field"])
            incoming[target] = incoming.get(target, 0) + 1
            if incoming[target] > 1 and nodes[dst["node_id"]]["type"] != "collect":
                errors.append(f"{where}: a second edge into the same input")
            provided.add(target)
        errors += self._check_cycles(graph)
        for group in data or []:
            lengths = {len(datum.get("items", [])) for datum in group}
            if len(lengths) > 1:
                errors.append("batch data: zipped items of different lengths")
            for datum in group:
                node = nodes.get(datum["node_path"])
                if node is None:
                    errors.append(f"batch data: unknown node {datum['node_path']!r}")
                    continue
                field = self.node_schemas[node["type"]]["properties"].get(datum["field_name"])
                if field is None:
                    errors.append(
                        f"batch data: {datum['node_path']} has no {datum['field_name']!r}"
                    )
                    continue
                for item in datum.get("items", []):
                    errors += self.validate(item, field, f"batch data {datum['node_path']}")
                provided.add((datum["node_path"], datum["field_name"]))
        for node_id, node in nodes.items():
            props = self.node_schemas[node["type"]]["properties"]
            for name, field in props.items():
                if field.get("field_kind") != "input":
                    continue
                connected = (node_id, name) in provided
                if field.get("input") == "connection" and name in node and node[name] is not None:
                    errors.append(f"node {node_id}.{name}: takes only a connection, not a value")
                if field.get("orig_required") and not connected and node.get(name) is None:
                    errors.append(f"node {node_id}.{name}: required input has no value or edge")
        return errors

    def _signature(self, schema: dict[str, Any]) -> set[str]:
        """The types a field holds: component names, JSON types, ``array[...]``, ``any``."""
        if "$ref" in schema:
            return {schema["$ref"].rsplit("/", 1)[-1]}
        if "anyOf" in schema:
            return set().union(*(self._signature(s) for s in schema["anyOf"])) - {"null"}
        kind = schema.get("type")
        if kind == "array":
            items = self._signature(schema.get("items", {}))
            return {f"array[{i}]" for i in items}
        if kind is None:
            return {"any"}
        return {kind} if isinstance(kind, str) else set(kind)

    def _compatible(self, output: dict[str, Any], field: dict[str, Any]) -> bool:
        out, into = self._signature(output), self._signature(field)
        if "any" in out or "any" in into or out & into:
            return True
        if "integer" in out and "number" in into:
            return True
        arrays_in = any(t.startswith("array[") for t in into)
        return ("array[any]" in out and arrays_in) or (
            any(t.startswith("array[any]") for t in into)
            and any(t.startswith("array[") for t in out)
        )

    @staticmethod
    def _check_cycles(graph: dict[str, Any]) -> list[str]:
        after: dict[str, set[str]] = {}
        for edge in graph.get("edges", []):
            after.setdefault(edge["source"]["node_id"], set()).add(edge["destination"]["node_id"])
        state: dict[str, int] = {}

        def visit(node: str) -> bool:
            state[node] = 1
            for nxt in after.get(node, ()):
                if state.get(nxt) == 1 or (state.get(nxt) is None and visit(nxt)):
                    return True
            state[node] = 2
            return False

        for node in list(graph.get("nodes", {})):
            if state.get(node) is None and visit(node):
                return ["the graph contains a cycle"]
        return []
