"""API-format workflows: loading a template, finding where each value goes, filling it in.

A *field* is a value the generator puts into the workflow: the request's ``prompt``,
``negative_prompt``, ``width``, ``height`` and ``seed``, the settings ``steps``, ``cfg``,
``sampler``, ``scheduler`` and ``checkpoint``, or a *custom* field named by the template
(``{{color}}``) whose value comes from the ``values`` setting or a keyword argument.

Where a field goes is found, in this order, by the first of these that names it:

1. the ``mapping`` setting: ``prompt: "6.text"`` (node id or ``_meta.title``, then input);
2. placeholders in input values: ``"text": "{{prompt}}"`` or ``"a photo of {{prompt}}"``,
   and nodes titled after a field (``positive``, ``negative``, ``seed``, ``size``...);
3. the built-in mapping, which follows the graph of ComfyUI's standard text-to-image
   workflow: the sampler's ``positive``/``negative`` text encoders, its empty latent, the
   checkpoint loader feeding its model, and every literal ``seed``/``noise_seed``.

Everything is checked when the template is loaded, so that a missing node or input is a
:class:`~degrees37_imagegen.ConfigError` when the generator is created.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from degrees37_imagegen.errors import ConfigError

from ._loading import BUILTIN_DEFAULTS, builtin_workflow, check_api_format, is_link, load_workflow

__all__ = [
    "BUILTIN_DEFAULTS",
    "FIELDS",
    "SETTING_FIELDS",
    "Target",
    "WorkflowTemplate",
    "builtin_workflow",
    "is_link",
    "load_workflow",
]

#: The known fields and the Python type of their values.
FIELDS: dict[str, type] = {
    "prompt": str,
    "negative_prompt": str,
    "width": int,
    "height": int,
    "seed": int,
    "steps": int,
    "cfg": float,
    "sampler": str,
    "scheduler": str,
    "checkpoint": str,
}

#: Fields whose values come from the generator's settings (the rest come with each request).
SETTING_FIELDS = ("steps", "cfg", "sampler", "scheduler", "checkpoint")

# The inputs that can hold a field, most likely first ("value" is what primitive nodes use).
_FIELD_INPUTS: dict[str, tuple[str, ...]] = {
    "prompt": ("text", "text_g", "prompt", "string", "value"),
    "negative_prompt": ("text", "text_g", "prompt", "string", "value"),
    "width": ("width", "value"),
    "height": ("height", "value"),
    "seed": ("seed", "noise_seed", "value"),
    "steps": ("steps", "value"),
    "cfg": ("cfg", "value"),
    "sampler": ("sampler_name", "value"),
    "scheduler": ("scheduler", "value"),
    "checkpoint": ("ckpt_name", "unet_name", "model_name", "value"),
}

# Node titles (normalised) that say which field(s) a node holds.
_TITLE_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",),
    "positive": ("prompt",),
    "positive_prompt": ("prompt",),
    "negative": ("negative_prompt",),
    "negative_prompt": ("negative_prompt",),
    "width": ("width",),
    "height": ("height",),
    "size": ("width", "height"),
    "seed": ("seed",),
    "steps": ("steps",),
    "cfg": ("cfg",),
    "sampler": ("sampler",),
    "scheduler": ("scheduler",),
    "checkpoint": ("checkpoint",),
}

# Placeholder names that stand for a field under another name.
_PLACEHOLDER_ALIASES = {"positive": "prompt", "negative": "negative_prompt"}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# Inputs through which conditioning reaches a sampler (for finding the text encoders).
_CONDITIONING_INPUTS = ("conditioning", "conditioning_1", "conditioning_to", "guider")

_KEY_TEMPLATE = "workflow_template"


#: Values ``_copied`` shares rather than copies: they cannot change.
_ATOMS = (str, int, float, type(None))


def _copied(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists and atoms), as ``copy.deepcopy`` makes it but
    several times faster (a workflow is copied for each image); anything else is copied by
    ``copy.deepcopy``."""
    if type(value) is dict:
        return {k: v if isinstance(v, _ATOMS) else _copied(v) for k, v in value.items()}
    if type(value) is list:
        return [v if isinstance(v, _ATOMS) else _copied(v) for v in value]
    return copy.deepcopy(value)


def _norm(title: str) -> str:
    return re.sub(r"[\s\-]+", "_", title.strip().lower())


@dataclass(frozen=True)
class Target:
    """One place a field goes: ``node`` id, ``input`` name, and how it was found."""

    node: str
    input: str
    how: str  # "mapping", "title", "placeholder" or "builtin"

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


class WorkflowTemplate:
    """An API-format workflow and where each field goes in it.

    ``mapping`` is the ``mapping`` setting: field name to a target or a list of targets,
    each ``"<node id or title>.<input>"``, ``"<node id or title>"`` (the field's usual
    input) or ``{"node": ..., "input": ...}``; ``None`` (or ``false``) for a field turns
    its mapping off. Raises :class:`ConfigError` for anything that does not fit.
    """

    def __init__(
        self,
        workflow: Mapping[str, Any],
        *,
        name: str = "inline",
        mapping: Mapping[str, Any] | None = None,
        builtin: bool = False,
    ) -> None:
        self.nodes: dict[str, Any] = check_api_format(
            copy.deepcopy(dict(workflow)), "the workflow template"
        )
        self.name = name
        self.builtin = builtin
        #: Strings holding placeholders: (node id, input) -> the string.
        self.placeholders: dict[tuple[str, str], str] = {}
        #: Field -> where it goes, for fields set as whole input values.
        self.targets: dict[str, tuple[Target, ...]] = {}
        #: Fields named by placeholders.
        self.placeholder_fields: set[str] = set()
        #: Fields that are not known fields (values from ``values`` or keyword arguments).
        self.custom_fields: set[str] = set()
        self._resolve(dict(mapping or {}))

    # -- reading the workflow ------------------------------------------------------------

    def class_type(self, node_id: str) -> str:
        """The ``class_type`` of node ``node_id`` (``"?"`` if there is none)."""
        node = self.nodes.get(str(node_id))
        return str(node["class_type"]) if node else "?"

    def title(self, node_id: str) -> str | None:
        """The node's ``_meta.title``, if it has one."""
        meta = self.nodes.get(str(node_id), {}).get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) else None
        return title if isinstance(title, str) else None

    def has(self, field: str) -> bool:
        """Whether ``field`` goes anywhere in the workflow."""
        return field in self.targets or field in self.placeholder_fields

    def fields(self) -> set[str]:
        """Every field that goes somewhere."""
        return set(self.targets) | self.placeholder_fields

    def _literal_inputs(self, node_id: str, names: Iterable[str]) -> list[str]:
        inputs = self.nodes[node_id]["inputs"]
        return [n for n in names if n in inputs and not is_link(inputs[n])]

    def _link_source(self, node_id: str, input_name: str) -> str | None:
        value = self.nodes.get(node_id, {}).get("inputs", {}).get(input_name)
        return str(value[0]) if is_link(value) else None

    # -- finding targets -----------------------------------------------------------------

    def _resolve(self, mapping: dict[str, Any]) -> None:
        disabled = {f for f, spec in mapping.items() if spec is None or spec is False}
        for field_name, spec in mapping.items():
            if field_name in disabled:
                continue
            if not isinstance(field_name, str) or not field_name.isidentifier():
                raise ConfigError(
                    f"{field_name!r} is not a field name (use prompt, width, ... or a name of "
                    "your own)",
                    key="mapping",
                )
            targets = self._parse_spec(field_name, spec)
            self.targets[field_name] = tuple(dict.fromkeys(targets))
            if field_name not in FIELDS:
                self.custom_fields.add(field_name)

        self._find_placeholders(disabled)
        found: dict[str, list[Target]] = {}
        for node_id in self.nodes:
            title = self.title(node_id)
            for field_name in _TITLE_FIELDS.get(_norm(title), ()) if title else ():
                if field_name in self.targets or field_name in disabled:
                    continue
                found.setdefault(field_name, []).append(
                    self._title_target(node_id, title or "", field_name)
                )
        for field_name, targets in found.items():
            if field_name not in self.placeholder_fields:
                self.targets[field_name] = tuple(dict.fromkeys(targets))

        for field_name, targets in self._builtin_targets().items():
            if field_name in disabled or self.has(field_name) or not targets:
                continue
            self.targets[field_name] = tuple(dict.fromkeys(targets))

    def _find_placeholders(self, disabled: set[str]) -> None:
        for node_id, node in self.nodes.items():
            for input_name, value in node["inputs"].items():
                if not isinstance(value, str):
                    continue
                names = self._placeholder_names(value)
                if not names:
                    continue
                if any(
                    t.node == node_id and t.input == input_name
                    for ts in self.targets.values()
                    for t in ts
                ):
                    continue  # the mapping setting overrides this input as a whole
                self.placeholders[(node_id, input_name)] = value
                for name in names:
                    if name in disabled:
                        raise ConfigError(
                            f"node {node_id} uses the placeholder {{{{{name}}}}}, but the "
                            f"mapping turns {name} off",
                            key=f"mapping.{name}",
                        )
                    self.placeholder_fields.add(name)
                    if name not in FIELDS:
                        self.custom_fields.add(name)

    @staticmethod
    def _placeholder_names(text: str) -> list[str]:
        return [_PLACEHOLDER_ALIASES.get(m, m) for m in _PLACEHOLDER.findall(text)]

    def _parse_spec(self, field_name: str, spec: Any) -> list[Target]:
        key = f"mapping.{field_name}"
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ConfigError("an empty list maps the field nowhere", key=key)
            return [t for item in spec for t in self._parse_spec(field_name, item)]
        if isinstance(spec, Mapping):
            node_ref, input_name = spec.get("node"), spec.get("input")
            if node_ref is None:
                raise ConfigError("a target needs a 'node' (an id or a title)", key=key)
            node_id = self._find_node(str(node_ref), key)
            return [
                self._target(
                    node_id,
                    None if input_name is None else str(input_name),
                    field_name,
                    key,
                    "mapping",
                )
            ]
        if isinstance(spec, (str, int)) and not isinstance(spec, bool):
            text = str(spec).strip()
            if self._match_node(text):
                return [self._target(self._find_node(text, key), None, field_name, key, "mapping")]
            if "." in text:
                node_ref, input_name = text.rsplit(".", 1)
                return [
                    self._target(
                        self._find_node(node_ref, key), input_name, field_name, key, "mapping"
                    )
                ]
            self._find_node(text, key)  # raises, naming the nodes there are
        raise ConfigError(
            f"expected '<node id or title>.<input>', a list of them, or "
            f"{{node: ..., input: ...}}; got {spec!r}",
            key=key,
        )

    def _match_node(self, ref: str) -> list[str]:
        if ref in self.nodes:
            return [ref]
        exact = [n for n in self.nodes if self.title(n) == ref]
        if exact:
            return exact
        return [n for n in self.nodes if (self.title(n) or "\0").lower() == ref.lower()]

    def _find_node(self, ref: str, key: str) -> str:
        matches = self._match_node(ref)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ConfigError(
                f"{len(matches)} nodes are titled {ref!r} ({', '.join(matches)}); use a node id",
                key=key,
            )
        titles = sorted({t for n in self.nodes if (t := self.title(n))})
        raise ConfigError(
            f"the workflow has no node with id or title {ref!r} (node ids: "
            f"{', '.join(self.nodes)}" + (f"; titles: {', '.join(titles)}" if titles else "") + ")",
            key=key,
        )

    def _target(
        self, node_id: str, input_name: str | None, field_name: str, key: str, how: str
    ) -> Target:
        node = self.nodes[node_id]
        label = f"node {node_id} ({node['class_type']})"
        inputs = node["inputs"]
        if input_name is None:
            candidates = self._literal_inputs(node_id, _FIELD_INPUTS.get(field_name, ()))
            if not candidates:
                wanted = ", ".join(_FIELD_INPUTS.get(field_name, ())) or "an input name"
                raise ConfigError(
                    f"{label} has no input for {field_name} (looked for: {wanted}); "
                    f"write '{node_id}.<input>' (its inputs: {', '.join(inputs) or 'none'})",
                    key=key,
                )
            input_name = candidates[0]
        if input_name not in inputs:
            raise ConfigError(
                f"{label} has no input {input_name!r} (its inputs: {', '.join(inputs) or 'none'})",
                key=key,
            )
        if is_link(inputs[input_name]):
            source = inputs[input_name][0]
            raise ConfigError(
                f"input {input_name!r} of {label} is linked to node {source}; map the input "
                f"of node {source} that provides it instead",
                key=key,
            )
        return Target(node_id, input_name, how)

    def _title_target(self, node_id: str, title: str, field_name: str) -> Target:
        candidates = self._literal_inputs(node_id, _FIELD_INPUTS[field_name])
        if not candidates:
            raise ConfigError(
                f"node {node_id} ({self.class_type(node_id)}) is titled {title!r} but has no "
                f"input for {field_name} (looked for: {', '.join(_FIELD_INPUTS[field_name])}); "
                "rename it or map the field with the mapping setting",
                key=_KEY_TEMPLATE,
            )
        return Target(node_id, candidates[0], "title")

    # -- the built-in mapping (ComfyUI's standard text-to-image graph) -------------------

    def _samplers(self) -> list[str]:
        out = []
        for node_id, node in self.nodes.items():
            inputs = node["inputs"]
            if is_link(inputs.get("latent_image")) and (
                is_link(inputs.get("positive")) or is_link(inputs.get("guider"))
            ):
                out.append(node_id)
        return out

    def _main_sampler(self, samplers: list[str]) -> str | None:
        if len(samplers) == 1:
            return samplers[0]
        # Several (a refiner or hires pass): the one that starts from an empty latent.
        first = [
            s
            for s in samplers
            if (src := self._link_source(s, "latent_image")) is not None
            and self.class_type(src).startswith("Empty")
        ]
        return first[0] if len(first) == 1 else None

    def _text_source(self, sampler: str, polarity: str) -> str | None:
        """Follow the sampler's positive/negative conditioning back to a text encoder."""
        start = self._link_source(sampler, polarity)
        if start is None:
            guider = self._link_source(sampler, "guider")
            if guider is None:
                return None
            start = self._link_source(guider, polarity)
            if start is None and polarity == "positive":
                start = self._link_source(guider, "conditioning")
        seen: set[str] = set()
        queue = [start] if start else []
        while queue and len(seen) < 16:
            node_id = queue.pop(0)
            if node_id in seen:
                continue
            seen.add(node_id)
            inputs = self.nodes[node_id]["inputs"]
            for name in _FIELD_INPUTS["prompt"][:-1]:  # not "value": too vague here
                if isinstance(inputs.get(name), str):
                    return node_id
            for name in (polarity, *_CONDITIONING_INPUTS):
                src = self._link_source(node_id, name)
                if src is not None:
                    queue.append(src)
        return None

    def _model_source(self, sampler: str) -> str | None:
        node_id = self._link_source(sampler, "model")
        seen: set[str] = set()
        while node_id is not None and node_id not in seen:
            seen.add(node_id)
            if self._literal_inputs(node_id, ("ckpt_name",)):
                return node_id
            node_id = self._link_source(node_id, "model")
        return None

    def _builtin_targets(self) -> dict[str, list[Target]]:
        out: dict[str, list[Target]] = {}

        def add(field_name: str, node_id: str | None, names: Iterable[str]) -> None:
            if node_id is None:
                return
            literal = self._literal_inputs(node_id, names)
            if literal:
                out.setdefault(field_name, []).append(Target(node_id, literal[0], "builtin"))

        # Every literal seed: keeping any template seed would make "seed" meaningless.
        for node_id in self.nodes:
            add("seed", node_id, ("seed", "noise_seed"))
        samplers = self._samplers()
        main = self._main_sampler(samplers)
        for field_name, name in (
            ("steps", "steps"),
            ("cfg", "cfg"),
            ("sampler", "sampler_name"),
            ("scheduler", "scheduler"),
        ):
            having = [n for n in self.nodes if self._literal_inputs(n, (name,))]
            if len(having) == 1:
                add(field_name, having[0], (name,))
            elif main in having:
                add(field_name, main, (name,))
        if main is not None:
            add("prompt", self._text_source(main, "positive"), _FIELD_INPUTS["prompt"][:-1])
            add(
                "negative_prompt", self._text_source(main, "negative"), _FIELD_INPUTS["prompt"][:-1]
            )
            latent = self._link_source(main, "latent_image")
            if latent is not None and len(self._literal_inputs(latent, ("width", "height"))) == 2:
                add("width", latent, ("width",))
                add("height", latent, ("height",))
            add("checkpoint", self._model_source(main), ("ckpt_name",))
        if "width" not in out:
            empties = [
                n
                for n in self.nodes
                if self.class_type(n).startswith("Empty")
                and len(self._literal_inputs(n, ("width", "height"))) == 2
            ]
            if len(empties) == 1:
                add("width", empties[0], ("width",))
                add("height", empties[0], ("height",))
        if "checkpoint" not in out:
            loaders = [n for n in self.nodes if self._literal_inputs(n, ("ckpt_name",))]
            if len(loaders) == 1:
                add("checkpoint", loaders[0], ("ckpt_name",))
        return out

    # -- filling in ----------------------------------------------------------------------

    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the workflow with ``values`` (field -> value) put in place.

        Fields missing from ``values`` (or ``None``) keep the template's values; every
        placeholder must have a value (check with :meth:`missing`).
        """
        workflow: dict[str, Any] = _copied(self.nodes)
        for (node_id, input_name), text in self.placeholders.items():
            workflow[node_id]["inputs"][input_name] = self._fill(text, values)
        for field_name, targets in self.targets.items():
            value = values.get(field_name)
            if value is None:
                continue
            for target in targets:
                workflow[target.node]["inputs"][target.input] = value
        return workflow

    def missing(self, values: Mapping[str, Any]) -> list[str]:
        """The placeholder fields that ``values`` gives no value for."""
        return sorted(f for f in self.placeholder_fields if values.get(f) is None)

    @staticmethod
    def _fill(text: str, values: Mapping[str, Any]) -> Any:
        whole = _PLACEHOLDER.fullmatch(text.strip())
        if whole:  # "{{width}}" alone becomes the value itself, with its type
            name = _PLACEHOLDER_ALIASES.get(whole.group(1), whole.group(1))
            return values[name]

        def sub(match: re.Match[str]) -> str:
            name = _PLACEHOLDER_ALIASES.get(match.group(1), match.group(1))
            return str(values[name])

        return _PLACEHOLDER.sub(sub, text)
