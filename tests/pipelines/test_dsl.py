from __future__ import annotations

from pathlib import Path

import pytest

from perfml.pipelines import Param, Pipeline, Preconditions, Ref, Resources, Task, step
from perfml.pipelines.errors import (
    CycleError,
    InvalidResourcesError,
    InvalidStepError,
    MissingInputError,
)
from pipelines.steps import extract, total


def test_step_returns_a_validated_definition() -> None:
    assert extract.name == "extract"
    assert extract.outputs == ("table",)
    assert extract.inputs == ("rows",)
    assert total.cache
    assert total.required_inputs == ("table", "scale")
    assert len(extract.code_version) == 16


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retries": -1}, "retries=-1"),
        ({"backoff": -0.5}, "backoff=-0.5"),
        ({"timeout": 0}, "timeout=0"),
        ({"outputs": ("nope",)}, "outputs=('nope',)"),
    ],
)
def test_bad_step_options_fail_at_definition_naming_the_value(
    options: dict[str, object], named: str
) -> None:
    def body(out: Path) -> None: ...

    body.__qualname__ = "body"
    with pytest.raises(InvalidStepError, match=named.replace("(", r"\(").replace(")", r"\)")):
        step(**options)(body)


@pytest.mark.parametrize(
    ("resources", "named"),
    [({"cpu": 0}, "cpu=0"), ({"memory": "lots"}, "memory='lots'"), ({"memory": -1}, "memory=-1")],
)
def test_bad_resources_name_the_value(resources: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidResourcesError, match=named):
        Resources(**resources)  # type: ignore[arg-type]


def test_resources_and_preconditions() -> None:
    assert Resources(memory="2G").memory_bytes == 2 * 10**9
    assert Preconditions(paths=("/no/such",), env=("TOKEN",)).missing({}) == [
        "path /no/such",
        "env TOKEN",
    ]


def test_a_cycle_is_refused_naming_it() -> None:
    with pytest.raises(CycleError, match="a -> b -> a|b -> a -> b") as caught:
        Pipeline(
            "loop",
            [
                Task("a", total, {"table": Ref("b", "table"), "scale": 1}),
                Task("b", extract, {"rows": Ref("a")}),
            ],
        )
    assert set(caught.value.cycle) == {"a", "b"}


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"table": Ref("extract", "table")}, "'scale': is not bound"),
        ({"table": Ref("nowhere", "table"), "scale": 1}, "no task named 'nowhere'"),
        ({"table": Ref("extract", "tabel"), "scale": 1}, "has no output 'tabel'"),
        ({"table": Ref("extract", "table"), "scale": 1, "extra": 2}, "has no such input"),
    ],
)
def test_missing_inputs_are_refused(inputs: dict[str, object], problem: str) -> None:
    with pytest.raises(MissingInputError, match=problem):
        Pipeline(
            "demo",
            [Task("extract", extract, {"rows": Param("rows")}), Task("total", total, inputs)],
        )


def test_topological_order() -> None:
    pipe = Pipeline(
        "demo",
        [
            Task("total", total, {"table": Ref("extract", "table"), "scale": Ref("extract")}),
            Task("extract", extract, {"rows": Param("rows")}),
        ],
    )
    assert pipe.order == ("extract", "total")
