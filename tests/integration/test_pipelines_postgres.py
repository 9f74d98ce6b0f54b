"""The run history's guarantees hold on a real PostgreSQL server too."""

from __future__ import annotations

import pytest

from pipelines import test_history as history_tests

pytestmark = pytest.mark.integration


@pytest.fixture
def history_url(postgres_url: str) -> str:
    return postgres_url


test_history = history_tests.test_history_keeps_runs_jobs_and_transitions
test_orphans = history_tests.test_a_killed_runner_leaves_jobs_a_new_runner_marks_orphaned
