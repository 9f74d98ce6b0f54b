"""Drift fixtures: a generated fleet with a workload change, ingested into a real store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fixtures.registry import database, make_artifact, registry, registry_url
from perfml.featurestore import FeatureStore
from perfml.sources.fleet import Fleet, generate_fleet

__all__ = ["database", "make_artifact", "registry", "registry_url"]

FLEET_STEP = timedelta(hours=1)
"""Hourly points keep a five-month fleet small; the distributions are the fleet's own."""


def fleet_store(tmp_path_factory: pytest.TempPathFactory, seed: int) -> tuple[Fleet, FeatureStore]:
    fleet = generate_fleet(hosts=24, months=5, seed=seed, drift_months=[3], step=FLEET_STEP)
    store = FeatureStore(tmp_path_factory.mktemp(f"fleet-{seed}"))
    store.write(fleet.iter_hosts())
    return fleet, store


@pytest.fixture(scope="session", params=[1, 2, 5, 8], ids=lambda s: f"seed{s}")
def drifted_fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Fleet, FeatureStore]:
    return fleet_store(tmp_path_factory, request.param)
