"""Every detector perfml ships keeps the detector contract, checked by the suite perfml ships
for plugins (:mod:`perfml.detectors.checks`), on two weeks of a generated host.

The suite runs over a fresh registry of the built-in detectors, so whatever toy detectors other
tests register in the default one are not in it; the toy detectors of ``tests/fixtures`` are
held to the same contract, as a plugin's author would hold theirs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.detectors import TOY_DETECTORS
from perfml.detectors import Detector
from perfml.detectors.builtin import builtin_detectors
from perfml.detectors.checks import CHECKS, Checker, ConformanceError, Sample, check_detector
from perfml.plugins import Registry
from perfml.sources.fleet import generate_fleet

BUILTIN = builtin_detectors()


def fleet_host() -> Sample:
    """Two weeks of one generated host, fitted on ten days."""
    fleet = generate_fleet(hosts=1, months=1, seed=20240101)
    steps = 14 * 288
    metrics = {name: series[:steps] for name, series in fleet.host_values("host-0000").items()}
    return Sample(fleet.timestamps()[:steps], metrics, "request_latency_ms", 10 * 288)


@pytest.fixture(scope="module")
def host() -> Sample:
    return fleet_host()


@pytest.fixture(scope="module", params=BUILTIN.names())
def checker(
    request: pytest.FixtureRequest, host: Sample, tmp_path_factory: pytest.TempPathFactory
) -> Checker:
    """One checker per built-in detector: it fits the detector once for every check."""
    return Checker(request.param, BUILTIN, host, tmp_path_factory.mktemp(request.param))


def test_every_builtin_detector_is_checked() -> None:
    assert set(BUILTIN.names()) == {"streaming", "iforest"}


@pytest.mark.parametrize("check", CHECKS)
def test_builtin_detectors_keep_the_contract(checker: Checker, check: str) -> None:
    checker.run(check)


@pytest.mark.parametrize("toy", TOY_DETECTORS, ids=lambda cls: cls.name)
def test_a_plugin_runs_the_same_suite(toy: type[Detector], tmp_path: Path) -> None:
    registry: Registry[type[Detector]] = Registry("detector")
    registry.register(toy)
    assert check_detector(toy.name, registry, workdir=tmp_path) == []


class Forgetful(Detector):
    """Breaks the contract on purpose: its saved form forgets what it learnt."""

    name = "forgetful"

    def update(self, ts: int, value: float) -> float:
        self.seen = getattr(self, "seen", 0) + 1
        return min(1.0, self.seen / 1e6)

    def reset(self) -> None:
        self.seen = 0

    def get_state(self) -> tuple[dict[str, int], dict[str, object]]:
        return {}, {}

    def set_state(self, meta: dict[str, int], arrays: dict[str, object]) -> None:
        self.seen = 0


def test_the_suite_catches_a_broken_detector(tmp_path: Path) -> None:
    registry: Registry[type[Detector]] = Registry("detector")
    registry.register(Forgetful)
    failures = check_detector("forgetful", registry, workdir=tmp_path)
    assert failures
    assert all(isinstance(failure, ConformanceError) for failure in failures)
    assert any(failure.check == "round trip" for failure in failures), failures
