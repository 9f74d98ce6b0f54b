"""Annotation templates expand as Prometheus's Go templates do (values from its template tests)."""

from __future__ import annotations

import math

import pytest

from perfml.alerting.templates import (
    TemplateError,
    check,
    expand,
    go_float,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"), (-0.0, "-0"), (1.0, "1"), (1.5, "1.5"), (0.1, "0.1"), (123456.0, "123456"),
        (1234567.0, "1.234567e+06"), (1e21, "1e+21"), (0.0001, "0.0001"), (0.00001, "1e-05"),
        (-2.5e-7, "-2.5e-07"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"),
        (1 / 3, "0.3333333333333333"),
    ],
)  # fmt: skip
def test_value_prints_as_go_formats_a_float64(value, text):
    assert go_float(value) == text
    assert expand("{{ $value }}", {}, value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1.0, "1"), (1234567.0, "1.235M"), (0.12, "120m"), (-1500.0, "-1.5k"),
     (1e-9, "1n"), (math.inf, "+Inf"), (math.nan, "NaN"), (999.99, "1000")],
)  # fmt: skip
def test_humanize(value, text):
    assert humanize(value) == text


def test_humanize_duration_and_percentage_and_1024():
    assert humanize_duration(899.99) == "14m 59s"
    assert humanize_duration(0) == "0s"
    assert humanize_duration(1.5) == "1.5s"
    assert humanize_duration(90061) == "1d 1h 1m 1s"
    assert humanize_duration(-3600) == "-1h 0m 0s"
    assert humanize_duration(0.0015) == "1.5ms"
    assert humanize_percentage(0.1234567) == "12.35%"
    assert humanize1024(1048576.0) == "1Mi"
    assert humanize1024(0.5) == "0.5"


def test_labels_pipelines_and_missing_labels():
    labels = {"pod": "train-1", "bytes": "2048"}
    assert expand("{{ $labels.pod }}/{{ .Labels.pod }}", labels, 1.0) == "train-1/train-1"
    assert expand("[{{ $labels.absent }}]", labels, 1.0) == "[]"  # missingkey=zero
    assert expand("{{ $labels.bytes | humanize1024 }}B", labels, 1.0) == "2kiB"
    assert expand("{{ humanizePercentage $value }}", {}, 0.5) == "50%"
    assert expand("{{ .Value | humanize }}", {}, 2500.0) == "2.5k"


def test_trim_markers_remove_space_beside_the_action():
    assert expand("a  {{- $value -}}  b", {}, 1.0) == "a1b"


@pytest.mark.parametrize(
    "text",
    ["{{ $value | printf }}", "{{ range $labels }}", "{{ $labels }}", "{{ $value ", "x }}",
     "{{ humanize $value $value }}"],
)  # fmt: skip
def test_outside_the_subset_is_an_error_naming_the_template(text):
    with pytest.raises(TemplateError, match="template"):
        check(text)


def test_a_non_number_into_humanize_is_an_error():
    with pytest.raises(TemplateError, match='parsing "abc"'):
        expand("{{ $labels.x | humanize }}", {"x": "abc"}, 1.0)
