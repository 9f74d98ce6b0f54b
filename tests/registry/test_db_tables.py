"""Every part's tables live in the registry's database, created by whoever opens it first."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import inspect

from perfml.alerting.store import AlertStore
from perfml.controller.decisions import DecisionLog
from perfml.pipelines.history import RunHistory
from perfml.registry.db import sqlite_url


def test_parts_opening_a_fresh_database_at_once_all_find_their_tables(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "metadata.db")
    failures: list[BaseException] = []
    opened: list[object] = []

    def open_all() -> None:
        try:
            for kind in (RunHistory, AlertStore, DecisionLog):
                store = kind(url)
                opened.append(store)
                store.close()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(opened) == 12
    tables = set(inspect(DecisionLog(url).engine).get_table_names())
    assert {"pipeline_runs", "alerts_current", "controller_decisions", "model_versions"} <= tables
