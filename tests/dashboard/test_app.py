"""The web adapter: pages, the panels' JSON, static files and errors over HTTP."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from perfml.dashboard.app import create_app, plotly_js
from perfml.dashboard.data import DashboardSources
from perfml.dashboard.panels import ChartKind, Dashboard, Page, Panel, Query, default_dashboard
from perfml.promql.series import MemorySeries

with warnings.catch_warnings():
    # starlette 0.46's testclient names anyio.abc.BlockingPortal, deprecated by anyio 4.16
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = MemorySeries()
    store.extend("up", {"job": "perfml-serving", "instance": "a:80"}, [1_000_000], [1.0])
    with TestClient(create_app(DashboardSources(series=store), refresh_seconds=5)) as opened:
        yield opened


def test_each_page_is_served_with_its_panels_and_the_navigation(client: TestClient) -> None:
    for page in default_dashboard().pages:
        answer = client.get(f"/{page.slug}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        text = answer.text
        assert f'data-page="{page.slug}"' in text
        assert 'data-refresh="5"' in text
        for panel in page.panels:
            assert f'id="body-{panel.id}"' in text
        for other in default_dashboard().pages:
            assert f'href="/{other.slug}"' in text
        assert f'<option value="{page.default_range}" selected>' in text
    assert 'data-page="jobs"' in client.get("/").text


def test_panels_json_for_a_range(client: TestClient) -> None:
    answer = client.get("/api/panels/inference", params={"start": 900, "end": 1000, "step": 10})
    assert answer.status_code == 200
    body = answer.json()
    assert body["range"] == {"start": 900_000, "end": 1_000_000, "step": 10_000}
    up = next(p for p in body["panels"] if p["id"] == "up")
    assert up["series"][0]["name"] == "a:80"
    assert up["series"][0]["v"][-1] == 1.0
    latency = next(p for p in body["panels"] if p["id"] == "latency")
    assert latency["empty"]
    assert latency["message"] == "No data yet for this time range."


def test_errors_answer_with_their_status_and_values(client: TestClient) -> None:
    bad = client.get("/api/panels/inference", params={"start": 1000, "end": 900})
    assert bad.status_code == 400
    assert bad.json() == {"error": "end 900000: is before the start 1000000"}
    missing = client.get("/api/panels/nope")
    assert missing.status_code == 404
    assert "'nope'" in missing.json()["error"]
    page = client.get("/nope")
    assert page.status_code == 404
    assert "jobs, inference" in page.text
    assert client.get("/static/missing.js").status_code == 404


def test_static_files_work_offline(client: TestClient) -> None:
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) == plotly_js().stat().st_size > 1_000_000
    assert "Plotly.react" in client.get("/static/dashboard.js").text
    assert client.get("/static/dashboard.css").status_code == 200
    assert client.get("/healthz").text == "ok"
    pages = client.get("/api/pages").json()
    assert [p["slug"] for p in pages] == list(default_dashboard().slugs)


def test_titles_and_notes_are_escaped() -> None:
    panel = Panel("x", "<script>alert(1)</script>", ChartKind.STAT, (Query("up"),), note="a<b")
    dashboard = Dashboard([Page("p", "P & Q", (panel,))])
    with TestClient(create_app(DashboardSources(), dashboard)) as client:
        text = client.get("/p").text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text
    assert "a&lt;b" in text
    assert "P &amp; Q" in text
