"""The registry's guarantees hold on a real PostgreSQL server too."""

from __future__ import annotations

import pytest

from fixtures.registry import database, make_artifact, registry
from registry import test_events as events_tests
from registry import test_registry as registry_tests

pytestmark = pytest.mark.integration

__all__ = ["database", "make_artifact", "registry"]


@pytest.fixture
def registry_url(postgres_url: str) -> str:
    return postgres_url


test_lineage = registry_tests.test_versions_are_numbered_content_addressed_and_carry_their_lineage
test_gate = registry_tests.test_the_gate_refuses_with_the_failed_threshold_and_both_values
test_rollback = registry_tests.test_rollback_walks_back_through_previous_holders
test_delete = registry_tests.test_a_version_held_by_an_alias_cannot_be_deleted
test_race = registry_tests.test_racing_promotions_leave_one_winner_and_a_consistent_log
test_outbox = events_tests.test_failed_deliveries_are_retried_and_survive_a_restart
test_migrate = registry_tests.test_a_registry_at_schema_1_is_migrated_and_its_versions_kept
