"""``promtool test rules`` as an oracle: series in its notation, expected samples, a verdict."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tests.integration.services.common import require_binary

from perfml.promql import STALE_NAN, MemorySeries, Sample
from perfml.promql.series import format_labels

_EXPANDING = re.compile(r"^([-+]?[0-9.eE+-]+?)(?:([+-])([0-9.eE+-]+))?x(\d+)$")


def expand_values(notation: str) -> list[float | None]:
    """The samples of promtool's ``values`` notation, one per interval; None is a gap ``_``.

    ``'0+10x3 _ stale 7'`` is ``[0, 10, 20, 30, None, STALE_NAN, 7]``; expansions add the
    step repeatedly, as promtool does, so floats match bit for bit.
    """
    out: list[float | None] = []
    for item in notation.split():
        if item == "_":
            out.append(None)
        elif item.startswith("_x"):
            out.extend([None] * int(item[2:]))
        elif item == "stale":
            out.append(STALE_NAN)
        elif (match := _EXPANDING.match(item)) is not None:
            start, sign, step, times = match.groups()
            value, delta = float(start), float(step or 0)
            out.append(value)
            for _ in range(int(times)):
                value = value + delta if sign != "-" else value - delta
                out.append(value)
        else:
            out.append(float(item))
    return out


@dataclass
class InputSeries:
    """One input series: its labels (with ``__name__``) and its promtool notation."""

    labels: Mapping[str, str]
    values: str

    def load_into(self, store: MemorySeries, interval_ms: int) -> None:
        labels = dict(self.labels)
        name = labels.pop("__name__")
        for k, value in enumerate(expand_values(self.values)):
            if value is not None:
                store.add(name, labels, k * interval_ms, value)


@dataclass
class ExprTest:
    """An expression, the time (ms from the start) and the samples expected there."""

    expr: str
    eval_ms: int
    samples: list[Sample] = field(default_factory=list)


def write_rules_test(
    path: Path, series: Sequence[InputSeries], tests: Sequence[ExprTest], interval_ms: int
) -> None:
    """A ``promtool test rules`` file checking ``tests`` against ``series``."""
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": f"{interval_ms}ms",
                "input_series": [
                    {"series": format_labels(s.labels), "values": s.values} for s in series
                ],
                "promql_expr_test": [
                    {
                        "expr": test.expr,
                        "eval_time": f"{test.eval_ms}ms",
                        "exp_samples": [
                            {"labels": format_labels(s.labels) or "{}", "value": s.value}
                            for s in test.samples
                        ],
                    }
                    for test in tests
                ],
            }
        ],
    }
    # PyYAML writes floats by repr (and .inf), which promtool reads back bit for bit.
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=10_000))


def run_rules_test(path: Path, timeout: float = 60.0) -> tuple[bool, str]:
    """Run ``promtool test rules path``; whether it passed, and its output."""
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode == 0, done.stdout + done.stderr


def failures(output: str) -> list[str]:
    """The failing checks in promtool's output, one ``expr ... exp ... got`` block each."""
    blocks: list[str] = []
    for line in output.splitlines():
        if line.strip().startswith("expr:"):
            blocks.append(line.strip())
        elif blocks and line.strip().startswith(("exp:", "got:")):
            blocks[-1] += " | " + line.strip()
    return blocks
