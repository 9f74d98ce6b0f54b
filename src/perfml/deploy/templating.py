"""Turning rendered Kubernetes objects into ytt templates, by probing the knobs.

A template must give, for *any* values, what :func:`perfml.deploy.k8s.render` gives. Rather
than keep a second copy of every object by hand, perfml finds where each knob lands: it renders
once with the default values and once with *probe* values — a distinctive value per knob
(``prb201ns`` for the namespace, ``913`` replicas, ``0.123`` for the drift threshold...) — and
compares the two, leaf by leaf:

- a leaf equal in both is a literal;
- a leaf that is the probe is ``#@ data.values.<knob>``;
- a string holding probes becomes a concatenation: ``"http://perfml." + data.values.namespace
  + ".svc"``; a number written inside PromQL becomes ``number(...)``, a duration turned into
  seconds ``seconds(...)`` (see :mod:`.ytt`);
- a knob whose default is ``None`` (``perfml.yaml`` decides) falls back to the default
  rendering's text: ``(number(data.values.thresholds.drift) if data.values.thresholds.drift
  != None else "0.1")``; a map item present only when it is set is wrapped in ``#@ if``.

Choice knobs (``serving_engine``, ``scheduler``) are enumerated: each combination is probed,
and each document is kept under the ``#@ if`` of the combinations it appears in, as it is.
:func:`templates` then renders its own templates with the default and the probe values of every
combination and refuses (:class:`~perfml.deploy.ytt.YttTemplateError`) unless they give exactly
the rendered objects, so a template that would drift from ``render`` is never written.
"""

from __future__ import annotations

import itertools
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from perfml.alerting.rules import number
from perfml.deploy.values import DeployValues
from perfml.deploy.ytt import (
    Expr,
    When,
    YttTemplateError,
    merge_values,
    render_templates,
    seconds,
    template_text,
)

Objects = list[dict[str, Any]]
Render = Callable[[DeployValues], Objects]

_FLOAT_PROBES = {"drift": 0.123, "error_rate": 0.0456}
_DURATION_PROBES = {"latency_p99": "777ms"}
_SCHEDULE_PROBE = "7 7 * * *"
_INT_PROBE = 913


@dataclass(frozen=True)
class Knob:
    """One leaf of :class:`DeployValues`: where it is, its default and its probe."""

    path: tuple[str, ...]
    default: Any
    probe: Any
    choices: tuple[str, ...] = ()
    description: str = ""

    @property
    def ref(self) -> str:
        return "data.values." + ".".join(self.path)

    def forms(self) -> list[tuple[str, str]]:
        """How the probe may be written inside a string: ``(text, expression)``, longest
        first (a duration also appears as PromQL seconds)."""
        probe = self.probe
        if isinstance(probe, bool) or probe is None:
            return []
        if isinstance(probe, int):
            found = [(str(probe), f"str({self.ref})")]
        elif isinstance(probe, float):
            found = [(number(probe), f"number({self.ref})")]
        else:
            found = [(probe, self.ref)]
            if self.path[-1] in _DURATION_PROBES:
                found.append((seconds(probe), f"seconds({self.ref})"))
        return sorted(found, key=lambda form: -len(form[0]))


def _choices(annotation: Any) -> tuple[str, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(arg) for arg in typing.get_args(annotation))
    return ()


FIXED: frozenset[tuple[str, ...]] = frozenset()
"""Knobs the templates keep at their default (none: every knob is a data value)."""


def knobs(
    model: type[BaseModel] = DeployValues,
    fixed: frozenset[tuple[str, ...]] = FIXED,
    base: BaseModel | None = None,
) -> list[Knob]:
    """Every leaf knob of ``model`` with its default (``base``'s value, else the model's) and
    a probe value unlike anything else rendered, except the ``fixed`` ones."""
    found: list[Knob] = []
    counter = itertools.count(201)

    def walk(model_type: type[BaseModel], instance: BaseModel, prefix: tuple[str, ...]) -> None:
        for name, field in model_type.model_fields.items():
            value = getattr(instance, name)
            path = (*prefix, name)
            if isinstance(value, BaseModel):
                walk(type(value), value, path)
                continue
            if path in fixed:
                continue
            choices = _choices(field.annotation)
            found.append(
                Knob(
                    path,
                    value,
                    None if choices else _probe(path, value, next(counter)),
                    choices,
                    field.description or "",
                )
            )

    walk(model, base if base is not None else model(), ())
    return found


def _probe(path: tuple[str, ...], default: Any, n: int) -> Any:
    name = path[-1]
    if name in _FLOAT_PROBES:
        return _FLOAT_PROBES[name]
    if name in _DURATION_PROBES:
        return _DURATION_PROBES[name]
    if name == "schedule":
        return _SCHEDULE_PROBE
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return _INT_PROBE
    if name == "cpu":
        return f"{n}7m"
    if name in {"memory"}:
        return f"{n}7Mi"
    if name.endswith("size"):
        return f"{n}7Gi"
    if name.endswith("namespace"):
        return f"prb{n}ns"
    return f"prb{n}x"


def _nest(pairs: Sequence[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in pairs:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


class _Differ:
    """Builds the template of one document from its default and its probe rendering."""

    def __init__(self, scalar_knobs: Sequence[Knob]) -> None:
        self.knobs = list(scalar_knobs)
        self.forms = sorted(
            ((text, expr, knob) for knob in self.knobs for text, expr in knob.forms()),
            key=lambda form: -len(form[0]),
        )
        self.pattern = re.compile("|".join(re.escape(text) for text, _, _ in self.forms))

    def tree(self, base: Any, probe: Any, where: str) -> Any:
        if isinstance(base, dict) and isinstance(probe, dict):
            extra = [key for key in base if key not in probe]
            if extra:
                raise YttTemplateError(where, f"{extra} disappear with the probe values")
            result: dict[str, Any] = {}
            for key, value in probe.items():
                if key in base:
                    result[key] = self.tree(base[key], value, f"{where}.{key}")
                else:
                    result[key] = When(self.condition(value, f"{where}.{key}"), self.lone(value))
            return result
        if isinstance(base, list) and isinstance(probe, list):
            if len(base) != len(probe):
                raise YttTemplateError(where, "a list changes length with the probe values")
            pairs = enumerate(zip(base, probe, strict=True))
            return [self.tree(b, p, f"{where}[{i}]") for i, (b, p) in pairs]
        if base == probe and type(base) is type(probe):
            return base
        return self.leaf(base, probe, where)

    def leaf(self, base: Any, probe: Any, where: str) -> Expr:
        for knob in self.knobs:
            if probe == knob.probe and type(probe) is type(knob.probe):
                if knob.default is None:
                    fallback = json.dumps(base)
                    return Expr(f"({knob.ref} if {knob.ref} != None else {fallback})")
                if base == knob.default:
                    return Expr(knob.ref)
        if isinstance(probe, str) and isinstance(base, str):
            return self.text(base, probe, where)
        raise YttTemplateError(where, f"{base!r} becomes {probe!r}: no knob explains it")

    def text(self, base: str, probe: str, where: str) -> Expr:
        parts: list[str | tuple[str, Knob]] = []
        position = 0
        for match in self.pattern.finditer(probe):
            parts.append(probe[position : match.start()])
            text = match.group(0)
            expr, knob = next((e, k) for t, e, k in self.forms if t == text)
            parts.append((expr, knob))
            position = match.end()
        parts.append(probe[position:])
        if len(parts) == 1:
            raise YttTemplateError(where, f"{base!r} becomes {probe!r}: no knob explains it")
        regex = ""
        for part in parts:
            if isinstance(part, str):
                regex += re.escape(part)
            elif part[1].default is None:
                regex += "(.*?)"
            else:
                regex += re.escape(self.default_text(part[0], part[1]))
        aligned = re.fullmatch(regex, base, flags=re.DOTALL)
        if aligned is None:
            raise YttTemplateError(where, f"{base!r} does not fit the template of {probe!r}")
        fallbacks = iter(aligned.groups())
        terms = []
        for part in parts:
            if isinstance(part, str):
                if part:
                    terms.append(json.dumps(part))
            elif part[1].default is None:
                ref = part[1].ref
                fallback = json.dumps(next(fallbacks))
                terms.append(f"({part[0]} if {ref} != None else {fallback})")
            else:
                terms.append(part[0])
        return Expr(" + ".join(terms))

    @staticmethod
    def default_text(expr: str, knob: Knob) -> str:
        if expr.startswith("str("):
            return str(knob.default)
        if expr.startswith("number("):
            return number(knob.default)
        if expr.startswith("seconds("):
            return seconds(knob.default)
        return str(knob.default)

    def lone(self, probe: Any) -> Any:
        """The template of a subtree that exists only with the probe values."""
        if isinstance(probe, dict):
            return {key: self.lone(value) for key, value in probe.items()}
        if isinstance(probe, list):
            return [self.lone(value) for value in probe]
        for knob in self.knobs:
            if probe == knob.probe and type(probe) is type(knob.probe):
                return Expr(knob.ref)
        if isinstance(probe, str) and self.pattern.search(probe):
            pieces = []
            position = 0
            for match in self.pattern.finditer(probe):
                if match.start() > position:
                    pieces.append(json.dumps(probe[position : match.start()]))
                pieces.append(next(e for t, e, _ in self.forms if t == match.group(0)))
                position = match.end()
            if position < len(probe):
                pieces.append(json.dumps(probe[position:]))
            return Expr(" + ".join(pieces))
        return probe

    def condition(self, probe: Any, where: str) -> str:
        text = json.dumps(probe)
        owners = [
            knob
            for knob in self.knobs
            if knob.default is None and any(form in text for form, _ in knob.forms())
        ]
        if len(owners) != 1:
            raise YttTemplateError(where, "appears with the probe values, but for no single knob")
        return f"{owners[0].ref} != None"


def _condition(combos: Sequence[dict[str, str]], choice_knobs: Sequence[Knob]) -> str | None:
    every = list(itertools.product(*(knob.choices for knob in choice_knobs)))
    chosen = {tuple(combo[knob.ref] for knob in choice_knobs) for combo in combos}
    if len(chosen) == len(every):
        return None
    terms = []
    for index, knob in enumerate(choice_knobs):
        values = sorted({combo[index] for combo in chosen}, key=knob.choices.index)
        if len(values) < len(knob.choices):
            terms.append((knob, values))
    product = set(
        itertools.product(
            *(next((v for k, v in terms if k is knob), knob.choices) for knob in choice_knobs)
        )
    )
    if product == chosen:
        return " and ".join(
            f"{knob.ref} == {json.dumps(values[0])}"
            if len(values) == 1
            else f"{knob.ref} in {json.dumps(values)}"
            for knob, values in terms
        )
    clauses = [
        "("
        + " and ".join(
            f"{k.ref} == {json.dumps(v)}" for k, v in zip(choice_knobs, combo, strict=True)
        )
        + ")"
        for combo in sorted(chosen)
    ]
    return " or ".join(clauses)


def _name(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind', 'object')}/{obj.get('metadata', {}).get('name', '?')}"


def templates(
    render: Render, defaults_from: DeployValues | None = None
) -> dict[str, list[tuple[str | None, dict[str, Any]]]]:
    """The ytt documents of every object ``render`` gives, grouped by file name
    (``<kind>-<name>.yml``), each with its ``#@ if`` condition or ``None``; checked as the
    module's doc says. ``defaults_from`` gives the defaults (the schema's) the probes differ
    from."""
    all_knobs = knobs(base=defaults_from)
    choice_knobs = [knob for knob in all_knobs if knob.choices]
    scalar_knobs = [knob for knob in all_knobs if not knob.choices]
    differ = _Differ(scalar_knobs)
    defaults = _nest([(knob.path, knob.default) for knob in all_knobs])
    probes = _nest([(knob.path, knob.probe) for knob in scalar_knobs])
    files: dict[str, list[tuple[dict[str, Any], list[dict[str, str]]]]] = {}
    expected: list[tuple[dict[str, Any], Objects]] = []
    for choice in itertools.product(*(knob.choices for knob in choice_knobs)):
        combo = {knob.ref: value for knob, value in zip(choice_knobs, choice, strict=True)}
        pairs = list(zip(choice_knobs, choice, strict=True))
        chosen = _nest([(knob.path, value) for knob, value in pairs])
        base_values = merge_values(defaults, chosen)
        probe_values = merge_values(merge_values(defaults, probes), chosen)
        base = render(DeployValues.model_validate(base_values))
        probed = render(DeployValues.model_validate(probe_values))
        if len(base) != len(probed):
            raise YttTemplateError(str(combo), "the probe values change the number of objects")
        expected += [(base_values, base), (probe_values, probed)]
        for obj, probe_obj in zip(base, probed, strict=True):
            tree = differ.tree(obj, probe_obj, _name(obj))
            file = f"{obj['kind'].lower()}-{obj['metadata']['name']}.yml"
            variants = files.setdefault(file, [])
            for known, combos in variants:
                if known == tree:
                    combos.append(combo)
                    break
            else:
                variants.append((tree, [combo]))
    result = {
        file: [(_condition(combos, choice_knobs), tree) for tree, combos in variants]
        for file, variants in files.items()
    }
    _check(result, expected)
    return result


def _check(
    documents: Mapping[str, list[tuple[str | None, dict[str, Any]]]],
    expected: Sequence[tuple[dict[str, Any], Objects]],
) -> None:
    texts = [template_text(docs) for docs in documents.values()]
    for values, objects in expected:
        rendered = render_templates(texts, values)
        key = sorted(json.dumps(obj, sort_keys=True) for obj in rendered)
        if key != sorted(json.dumps(obj, sort_keys=True) for obj in objects):
            raise YttTemplateError(
                json.dumps(values, sort_keys=True)[:200], "the templates do not give render()'s"
            )
