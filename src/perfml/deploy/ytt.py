"""The ytt templates of the Carvel package, written and rendered without ytt itself.

kapp-controller renders the package's ``config/`` with `ytt <https://carvel.dev/ytt/>`_. perfml
writes those templates (:func:`template_text`, :func:`schema_text`) and renders them too
(:func:`render_templates`), so that a test proves the templates give exactly what
``perfml export k8s`` gives, for any values. perfml emits, and renders, only this subset of ytt:

- ``#@ load("@ytt:data", "data")`` and ``#@ load("helpers.star", ...)`` first lines;
- a value line ``key: #@ EXPR`` or ``- #@ EXPR``, where ``EXPR`` is a Starlark expression made
  of ``data.values.a.b`` references, string, number and ``None`` literals, ``+``, ``==``,
  ``!=``, ``x if c else y``, ``and``, ``or``, ``in [...]`` and the calls ``str(x)``,
  ``number(x)`` (a number as PromQL writes it: ``2``, ``0.25``) and ``seconds(d)`` (a duration
  such as ``500ms`` as PromQL seconds), the last two defined in ``helpers.star``;
- ``#@ if EXPR:`` ... ``#@ end`` around a map item or around a whole document (before its
  ``---``);
- every other scalar is a JSON literal (JSON is YAML), so a line holds one item.

The data-values schema (``#@data/values-schema``) gives each knob its default; a knob marked
``#@schema/nullable`` defaults to ``None``; ``#@schema/desc`` and ``#@schema/validation`` are
documentation and checks for ytt, ignored here (the values were validated by
:class:`~perfml.deploy.values.DeployValues`).

>>> doc = {"kind": "Deployment", "spec": {"replicas": Expr("data.values.replicas")}}
>>> text = template_text([(None, doc)])
>>> print(text.splitlines()[-3:])
['kind: "Deployment"', 'spec:', '  replicas: #@ data.values.replicas']
>>> render_templates([text], {"replicas": 3})
[{'kind': 'Deployment', 'spec': {'replicas': 3}}]
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from perfml.alerting.rules import number as promql_number
from perfml.deploy.errors import DeployError
from perfml.timeparse import parse_duration

HELPERS_FILE = "helpers.star"
HELPERS_STAR = """\
# Helpers for perfml's templates: numbers and durations written as PromQL writes them.

def number(value):
  if type(value) == "int" or (type(value) == "float" and value == int(value)):
    return str(int(value))
  end
  return str(value)
end

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

def seconds(duration):
  total = 0.0
  digits = ""
  unit = ""
  for char in (duration + "#").elems():
    if char.isdigit() or char == ".":
      if unit:
        total += float(digits) * _UNITS[unit]
        digits = ""
        unit = ""
      end
      digits += char
    elif char == "#":
      total += float(digits) * _UNITS[unit]
    else:
      unit += char
    end
  end
  return number(total)
end
"""
"""``helpers.star``: ``number`` and ``seconds`` for ytt, as :func:`render_templates` has them."""

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


class YttTemplateError(DeployError):
    """A template cannot be written or rendered as asked; names the place and the reason."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Expr:
    """A value computed by ytt from the data values: ``key: #@ code``."""

    code: str


@dataclass(frozen=True)
class When:
    """A map item present only when ``condition`` holds: ``#@ if condition:`` ... ``#@ end``."""

    condition: str
    value: Any


def _scalar(value: Any) -> str:
    if isinstance(value, str) and "#@" in value:
        raise YttTemplateError(repr(value[:60]), "a literal must not contain '#@'")
    return json.dumps(value, ensure_ascii=True)


def _key(key: Any) -> str:
    text = str(key)
    if _SIMPLE_KEY.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return _scalar(text)


def _entry(prefix: str, value: Any, indent: int) -> list[str]:
    """Lines for ``prefix`` (``key:`` or ``-``) followed by ``value``."""
    pad = " " * indent
    if isinstance(value, Expr):
        return [f"{pad}{prefix} #@ {value.code}"]
    if isinstance(value, Mapping | list) and not value:
        return [f"{pad}{prefix} {'{}' if isinstance(value, Mapping) else '[]'}"]
    if isinstance(value, Mapping):
        lines = _mapping(value, indent + 2)
        if prefix == "-" and not lines[0].lstrip().startswith("#@"):
            return [f"{pad}- {lines[0].lstrip()}", *lines[1:]]
        return [f"{pad}{prefix}", *lines]
    if isinstance(value, list):
        return [f"{pad}{prefix}", *_sequence(value, indent + 2)]
    return [f"{pad}{prefix} {_scalar(value)}"]


def _mapping(node: Mapping[Any, Any], indent: int) -> list[str]:
    lines = []
    pad = " " * indent
    for key, value in node.items():
        if isinstance(value, When):
            lines.append(f"{pad}#@ if {value.condition}:")
            lines.extend(_entry(f"{_key(key)}:", value.value, indent))
            lines.append(f"{pad}#@ end")
        else:
            lines.extend(_entry(f"{_key(key)}:", value, indent))
    return lines


def _sequence(node: Sequence[Any], indent: int) -> list[str]:
    lines = []
    for item in node:
        lines.extend(_entry("-", item, indent))
    return lines


def template_text(
    documents: Sequence[tuple[str | None, Mapping[str, Any]]], header: str = ""
) -> str:
    """A ytt template file of ``documents``, each ``(condition or None, tree)``; the trees hold
    plain values, :class:`Expr` leaves and :class:`When` map items."""
    lines = list(header.splitlines())
    lines.append('#@ load("@ytt:data", "data")')
    lines.append(f'#@ load("{HELPERS_FILE}", "number", "seconds")')
    for condition, tree in documents:
        if condition is not None:
            lines.append(f"#@ if {condition}:")
        lines.append("---")
        lines.extend(_mapping(tree, 0))
        if condition is not None:
            lines.append("#@ end")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SchemaField:
    """One knob of the data-values schema."""

    path: tuple[str, ...]
    default: Any
    description: str = ""
    nullable_example: Any = None
    one_of: tuple[str, ...] = ()


def schema_text(fields: Sequence[SchemaField], header: str = "") -> str:
    """The ``#@data/values-schema`` file declaring ``fields`` (in order, nested by path)."""
    lines = [*header.splitlines(), "#@data/values-schema", "---"]
    opened: tuple[str, ...] = ()
    for field in fields:
        parents = field.path[:-1]
        common = 0
        while common < min(len(opened), len(parents)) and opened[common] == parents[common]:
            common += 1
        for depth in range(common, len(parents)):
            lines.append(f"{'  ' * depth}{_key(parents[depth])}:")
        opened = parents
        pad = "  " * len(parents)
        if field.description:
            lines.append(f"{pad}#@schema/desc {json.dumps(field.description)}")
        if field.one_of:
            lines.append(f"{pad}#@schema/validation one_of={json.dumps(list(field.one_of))}")
        value = field.default
        if value is None:
            lines.append(f"{pad}#@schema/nullable")
            value = field.nullable_example
        lines.append(f"{pad}{_key(field.path[-1])}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def schema_defaults(text: str) -> dict[str, Any]:
    """The default data values a schema file declares (``#@schema/nullable`` ones: ``None``)."""
    values = yaml.safe_load(text) or {}
    stack: list[tuple[int, str]] = []
    nullable = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "#@schema/nullable":
            nullable = True
            continue
        if not stripped or stripped.startswith("#") or stripped == "---":
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        key = json.loads(key) if key.startswith('"') else key
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if nullable:
            target = values
            for _, part in stack[:-1]:
                target = target[part]
            target[key] = None
            nullable = False
    return dict(values)


def merge_values(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` laid over them, map by map (as ytt merges data values)."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def seconds(duration: str) -> str:
    """A duration (``500ms``) as PromQL seconds (``0.5``), as ``helpers.star`` computes it."""
    return promql_number(parse_duration(duration).total_seconds())


_CALLS: dict[str, Callable[[Any], Any]] = {"str": str, "number": promql_number, "seconds": seconds}


class _Evaluator:
    """Evaluates the expression subset of the module's doc, nothing else."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def __call__(self, code: str) -> Any:
        try:
            tree = ast.parse(code, mode="eval")
        except SyntaxError as exc:
            raise YttTemplateError(code, f"not an expression ({exc.msg})") from None
        return self.eval(tree.body, code)

    def eval(self, node: ast.expr, code: str) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Attribute):
            return self.lookup(node, code)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.eval(node.left, code) + self.eval(node.right, code)
        if isinstance(node, ast.IfExp):
            chosen = node.body if self.eval(node.test, code) else node.orelse
            return self.eval(chosen, code)
        if isinstance(node, ast.BoolOp):
            results = (self.eval(value, code) for value in node.values)
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left = self.eval(node.left, code)
            right = self.eval(node.comparators[0], code)
            op = node.ops[0]
            if isinstance(op, ast.Eq):
                return left == right
            if isinstance(op, ast.NotEq):
                return left != right
            if isinstance(op, ast.In):
                return left in right
        if isinstance(node, ast.List):
            return [self.eval(item, code) for item in node.elts]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            function = _CALLS.get(node.func.id)
            if function is not None and len(node.args) == 1:
                return function(self.eval(node.args[0], code))
        raise YttTemplateError(code, f"{ast.unparse(node)!r} is outside perfml's ytt subset")

    def lookup(self, node: ast.Attribute, code: str) -> Any:
        parts = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        parts.reverse()
        if not (isinstance(current, ast.Name) and current.id == "data" and parts[:1] == ["values"]):
            raise YttTemplateError(code, f"{ast.unparse(node)!r}: only data.values is known")
        value: Any = self.values
        for depth, part in enumerate(parts[1:], start=1):
            if not isinstance(value, Mapping) or part not in value:
                raise YttTemplateError(code, f"no data value {'.'.join(parts[: depth + 1])}")
            value = value[part]
        return value


def render_templates(texts: Sequence[str], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The documents of the template ``texts`` with the data ``values`` (already merged with
    the schema's defaults), as ytt would give them, for perfml's subset."""
    evaluate = _Evaluator(values)
    documents: list[dict[str, Any]] = []
    for text in texts:
        kept: list[str] = []
        active = [True]
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith(("#@ load(", "#@data/")):
                continue
            if stripped.startswith("#@ if ") and stripped.endswith(":"):
                active.append(active[-1] and bool(evaluate(stripped[6:-1])))
                continue
            if stripped == "#@ end":
                active.pop()
                continue
            if not active[-1]:
                continue
            if stripped.startswith("#@"):
                raise YttTemplateError(stripped, "an annotation outside perfml's ytt subset")
            for marker in (": #@ ", "- #@ "):
                before, found, code = line.partition(marker)
                if found:
                    line = f"{before}{marker[:2]}{json.dumps(evaluate(code))}"
                    break
            kept.append(line)
        if len(active) != 1:
            raise YttTemplateError(text.splitlines()[0] if text else "<empty>", "unbalanced #@ if")
        documents.extend(doc for doc in yaml.safe_load_all("\n".join(kept)) if doc is not None)
    return documents
