"""Hot reload: the alias moves under load and no request fails; a broken version never serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow as pa

from fixtures.registry import registry_at
from perfml.registry import ModelRegistry
from perfml.serving import ModelRepository
from serving.support import infer_body

Answer = tuple[int, str, float, float]  # status, version, score of 3.0, seconds
SCORE_OF_3 = {"1": 0.5, "2": 0.0}  # v1 is centred on 0, v2 on 3


@contextmanager
def hammering(base: str, threads: int = 6) -> Iterator[list[list[Answer]]]:
    """Threads posting /infer as fast as they can until the block ends; their answers."""
    stop = threading.Event()
    answers: list[list[Answer]] = [[] for _ in range(threads)]

    def worker(mine: list[Answer]) -> None:
        with httpx.Client(base_url=f"http://{base}", timeout=10) as http:
            while not stop.is_set():
                started = time.perf_counter()
                response = http.post("/v2/models/cpu/infer", json=infer_body([3.0]))
                seconds = time.perf_counter() - started
                if response.status_code != 200:
                    mine.append((response.status_code, "", -1.0, seconds))
                    continue
                body = response.json()
                mine.append((200, body["model_version"], body["outputs"][0]["data"][0], seconds))

    pool = [threading.Thread(target=worker, args=(a,)) for a in answers]
    for thread in pool:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in pool:
            thread.join(timeout=30)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        time.sleep(0.02)


def versions_seen(answers: list[list[Answer]]) -> set[str]:
    return {a[1] for mine in answers for a in list(mine)}


def test_alias_move_swaps_under_load_without_a_failed_request(
    live_server: str, models: ModelRegistry
) -> None:
    with hammering(live_server) as answers:
        wait_for(lambda: sum(len(a) for a in answers) > 60)
        models.promote("cpu", 2, reason="better")
        wait_for(lambda: "2" in versions_seen(answers))
        time.sleep(0.3)
    every = [a for mine in answers for a in mine]
    assert len(every) > 100
    assert [a for a in every if a[0] != 200] == []
    assert all(a[2] == SCORE_OF_3[a[1]] for a in every)  # one version per answer, whole
    for mine in answers:  # each client switches once, and never back
        seen = [a[1] for a in mine]
        assert seen == sorted(seen)
    assert mine[-1][1] == "2"


def test_a_version_that_fails_to_load_is_not_swapped_in(
    live_server: str,
    models: ModelRegistry,
    repository: ModelRepository,
    make_artifact: Callable[[bytes], Path],
    failures: list[tuple[str, int | None, str]],
) -> None:
    broken = models.register("cpu", make_artifact(b"not a model"), detector="toy_static_zscore")
    assert broken.version == 3
    with hammering(live_server, threads=4) as answers:
        wait_for(lambda: sum(len(a) for a in answers) > 40)
        models.set_alias("cpu", "production", 3, reason="oops")
        wait_for(lambda: bool(failures))
        time.sleep(0.5)  # several polls: the failure is reported once, not retried each time
        models.set_alias("cpu", "production", 2, reason="fix")
        wait_for(lambda: "2" in versions_seen(answers))
    every = [a for mine in answers for a in mine]
    assert [a for a in every if a[0] != 200] == []
    assert versions_seen(answers) == {"1", "2"}
    assert [(m, v) for m, v, _ in failures] == [("cpu", 3)]
    assert failures[0][2]  # the loader's own explanation
    assert repository.served("cpu").last_error is None


def test_moves_made_by_another_process_are_found_by_polling(
    repository: ModelRepository, registry_url: str, tmp_path: Path
) -> None:
    loaded: list[tuple[str, int]] = []
    repository.on_loaded = lambda model, version, seconds: loaded.append((model, version))
    repository.start()
    assert repository.get("cpu").version.version == 1
    with registry_at(registry_url, tmp_path / "artifacts", actor="other") as elsewhere:
        elsewhere.promote("cpu", 2)  # no event reaches the repository's registry object
    wait_for(lambda: repository.get("cpu").version.version == 2)
    assert ("cpu", 2) in loaded
    assert repository.get("cpu", "2").version.version == 2


def test_a_request_keeps_its_model_through_a_swap(
    repository: ModelRepository, models: ModelRegistry
) -> None:
    repository.start()
    held = repository.get("cpu")
    models.promote("cpu", 2)
    wait_for(lambda: repository.get("cpu").version.version == 2)
    assert held.version.version == 1  # what a request took is not changed under it
    assert held.detector.score(pa.table({"ts": [0], "value": [3.0]})).tolist() == [0.5]
