"""Events: subscribers, and signed webhooks delivered from the outbox with retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixtures.registry import registry_at
from perfml.registry.events import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    DeliveryPolicy,
    verify_signature,
)

FAST = DeliveryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, timeout=5.0)


class Receiver:
    """A webhook endpoint on loopback that fails its first ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(503)
                else:
                    receiver.received.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_subscribers_hear_of_new_versions_and_alias_moves(registry, make_artifact):
    heard = []
    registry.subscribe(heard.append)
    registry.register("cpu", make_artifact(b"1"), detector="seasonal")
    registry.promote("cpu", 1)
    assert [(e.kind, e.model) for e in heard] == [
        ("version_created", "cpu"),
        ("alias_moved", "cpu"),
    ]
    assert heard[1].payload["alias"] == "production"
    assert heard[1].payload["to_version"] == 1


def test_a_failing_subscriber_does_not_undo_the_change(registry, make_artifact):
    def broken(event):
        raise RuntimeError("subscriber bug")

    registry.subscribe(broken)
    registry.register("cpu", make_artifact(b"1"), detector="seasonal")
    assert registry.get("cpu").version == 1


def test_webhooks_get_signed_json(registry, make_artifact, receiver):
    registry.add_webhook(receiver.url, "s3cret", ["alias_moved"])
    registry.register("cpu", make_artifact(b"1"), detector="seasonal")
    registry.promote("cpu", 1, reason="first")
    assert registry.deliver_events(FAST) == 1
    ((headers, body),) = receiver.received
    assert headers[EVENT_HEADER] == "alias_moved"
    assert verify_signature(body, "s3cret", headers[SIGNATURE_HEADER])
    assert not verify_signature(body, "wrong", headers[SIGNATURE_HEADER])
    assert not verify_signature(body + b" ", "s3cret", headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["event"] == "alias_moved"
    assert (payload["model"], payload["alias"], payload["to_version"]) == ("cpu", "production", 1)
    assert headers[DELIVERY_HEADER].isdigit()


def test_failed_deliveries_are_retried_and_survive_a_restart(
    registry, registry_url, make_artifact, tmp_path
):
    flaky = Receiver(failures=2)
    try:
        registry.add_webhook(flaky.url, "k", ["version_created"])
        registry.register("cpu", make_artifact(b"1"), detector="seasonal")
        assert registry.deliver_events(DeliveryPolicy(attempts=4, base_delay=60.0)) == 0
        assert flaky.received == []  # first attempt failed; the next is a minute away
        with registry_at(registry_url, tmp_path / "artifacts") as later:  # a new process
            assert later.deliver_events(FAST) == 0  # not due yet
            in_two_minutes = lambda: time.time() + 120  # noqa: E731
            assert later.deliver_events(FAST, now=in_two_minutes) == 1  # it retries
            assert (flaky.failures, len(flaky.received)) == (0, 1)  # third attempt went through
            assert later.deliver_events(FAST, now=in_two_minutes) == 0  # delivered once only
    finally:
        flaky.close()


def test_a_webhook_that_never_answers_is_given_up_after_the_attempts(registry, make_artifact):
    dead = Receiver(failures=100)
    try:
        registry.add_webhook(dead.url, "k")
        registry.register("cpu", make_artifact(b"1"), detector="seasonal")
        for _ in range(6):
            registry.deliver_events(FAST)
        assert dead.failures == 100 - FAST.attempts
    finally:
        dead.close()


def test_bad_webhooks_are_refused(registry):
    from perfml.registry.errors import RegistryError

    with pytest.raises(RegistryError, match="needs an http"):
        registry.add_webhook("ftp://x", "k")
    with pytest.raises(RegistryError, match="needs an http"):
        registry.add_webhook("http://x", "k", ["model_exploded"])
