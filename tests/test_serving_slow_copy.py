"""A new version copied slowly into a served model's base path, the way `cp -r` of a large model
writes it, while clients keep asking for the latest version over REST and gRPC (issue 16: "loaded
once complete, with 0 failed requests during the swap").

The copy makes the version folder first, then writes one file after another, each a chunk at a
time: the poller catches it half-copied again and again, for longer than the load-retry budget
(`max_load_retries` x `load_retry_interval`) lasts. Version 1 must answer every request until
version 2 is available, version 2 every request after, and no request may fail.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from serving import layout
from serving.models import ModelRegistry
from serving.server import ModelServer
from serving.testing import save_toy_model

WARMUP = {"serving_default": {"text": ["warm up"]}}
TEXTS = ["ab", "abc"]
# The toy model's `scores` for TEXTS: each text's length times scale * [1, 2, 3]; the scale of
# each exported version is its number, so the two versions answer differently.
SCORES = {version: [[length * version * k for k in (1.0, 2.0, 3.0)] for length in (2, 3)]
          for version in (1, 2)}
POLL_SECONDS = 0.1
# A retry budget (2 attempts within 0.2 s) far shorter than the copy (about 2.4 s).
RETRIES, RETRY_INTERVAL = 1, 0.2
CHUNKS, PAUSE = 4, 0.1  # each file written in 4 chunks, with a pause before each entry and chunk


@dataclass(frozen=True)
class Answer:
    """One request of a client: when it was sent and answered, and which version answered."""

    transport: str
    sent: float  # time.time()
    received: float
    version: int | None  # None: an error, or outputs of neither version (a mix)
    detail: str  # the outputs or the error


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[int, Path]:
    """Version number -> a finished version folder of `toy` at that scale (with warm-up
    requests, as `export_model` writes it)."""
    tmp = tmp_path_factory.mktemp("slow_copy")
    folders = {}
    for version in (1, 2):
        root = tmp / f"export{version}"
        layout.export_model(save_toy_model(tmp / f"src{version}", float(version)), root, "toy",
                            warmup_inputs=WARMUP)
        folders[version] = root / "toy" / "1"
    return folders


def copy_order(source: Path, path: Path) -> tuple[int, str]:
    """saved_model.pb first and variables/ last, so the copy is loadable only once complete."""
    top = path.relative_to(source).parts[0]
    return {"saved_model.pb": 0, "variables": 2}.get(top, 1), str(path)


def copy_slowly(source: Path, target: Path) -> float:
    """Copy `source` to `target` as a slow `cp -r`: `target` first, then each entry in turn, each
    file in CHUNKS writes, with PAUSE seconds before every entry and chunk. Returns the
    time.time() at which the last write began."""
    target.mkdir()
    last_write = time.time()
    for path in sorted(source.rglob("*"), key=lambda path: copy_order(source, path)):
        time.sleep(PAUSE)
        copy = target / path.relative_to(source)
        if path.is_dir():
            copy.mkdir()
            continue
        data = path.read_bytes()
        size = max(1, -(-len(data) // CHUNKS))
        with copy.open("wb") as handle:
            for start in range(0, len(data), size):
                if start:
                    time.sleep(PAUSE)
                last_write = time.time()
                handle.write(data[start:start + size])
                handle.flush()
    return last_write


def version_of(scores: list[list[float]]) -> int | None:
    """The version whose outputs these are (None: neither's, e.g. rows of both)."""
    return next((version for version, expected in SCORES.items() if scores == expected), None)


def rest_client(url: str, stop: threading.Event) -> list[Answer]:
    """Predict with the latest version over REST until `stop`, recording every answer."""
    body = json.dumps({"instances": TEXTS}).encode()
    answers = []
    while not stop.is_set():
        sent = time.time()
        try:
            request = urllib.request.Request(url + "/v1/models/toy:predict", data=body)
            with urllib.request.urlopen(request, timeout=30) as response:
                scores = [row["scores"] for row in json.loads(response.read())["predictions"]]
            answers.append(Answer("rest", sent, time.time(), version_of(scores), str(scores)))
        except Exception as error:  # noqa: BLE001  every failure is recorded, none ends the client
            answers.append(Answer("rest", sent, time.time(), None, repr(error)))
    return answers


def grpc_client(target: str, stop: threading.Event) -> list[Answer]:
    """Predict with the latest version over gRPC until `stop`, recording every answer; the version
    the response names must be the one whose outputs it holds."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
    answers = []
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        while not stop.is_set():
            sent = time.time()
            try:
                response = stub.Predict(request, timeout=30)
                scores = tf.make_ndarray(response.outputs["scores"]).tolist()
                version = version_of(scores)
                named = response.model_spec.version.value
                answers.append(Answer("grpc", sent, time.time(),
                                      version if version == named else None,
                                      f"{scores} named version {named}"))
            except Exception as error:  # noqa: BLE001  every failure is recorded
                answers.append(Answer("grpc", sent, time.time(), None, repr(error)))
    return answers


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_version_copied_slowly_is_served_once_complete_and_no_request_fails(
        exported, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="opinionrec.serving")
    base = tmp_path / "toy"
    shutil.copytree(exported[1], base / "1")
    registry = ModelRegistry.from_base_path("toy", base, max_load_retries=RETRIES,
                                            load_retry_interval=RETRY_INTERVAL)
    stop = threading.Event()
    with ModelServer(registry, rest_port=0, grpc_port=0, poll_seconds=POLL_SECONDS) as server, \
            ThreadPoolExecutor(4) as pool:
        try:
            clients = [pool.submit(rest_client, server.rest_url, stop) for _ in range(2)]
            clients += [pool.submit(grpc_client, server.grpc_target, stop) for _ in range(2)]
            time.sleep(0.5)  # answers from version 1 alone first
            copy_started = time.time()
            completed = copy_slowly(exported[2], base / "2")
            copy_seconds = time.time() - copy_started
            wait_until(lambda: registry.available()["toy"] == [2], 30, "version 2 alone served")
            time.sleep(0.5)  # answers from version 2 alone last
        finally:
            stop.set()
        answers = [answer for client in clients for answer in client.result()]

    messages = [(record.created, record.getMessage()) for record in caplog.records]
    available = next(at for at, message in messages
                     if message.startswith("toy: version 2 available"))
    failed_loads = sum("version 2 failed to load" in message for _, message in messages)
    failed = [answer for answer in answers if answer.version is None]
    counts = Counter((answer.transport, answer.version) for answer in answers)
    during = [answer for answer in answers if copy_started <= answer.sent < available]
    received = sorted(answer.received for answer in answers)
    longest_gap = max(later - earlier for earlier, later in zip(received, received[1:]))
    print(f"slow copy: {copy_seconds:.2f} s, {failed_loads} failed loads of the half-copied "
          f"version 2, available {available - completed:.2f} s after its last write began; "
          f"{len(answers)} requests ({len(during)} sent during the swap), answered by "
          f"(transport, version): {dict(sorted(counts.items(), key=str))}, failed "
          f"{len(failed)}, longest gap between answers {longest_gap:.3f} s")

    assert not failed, failed[:5]
    # The copy outlasted the retry budget, was caught half-copied more often than the budget
    # allows, and was loaded nonetheless.
    assert copy_seconds > RETRIES * RETRY_INTERVAL
    assert failed_loads > RETRIES + 1
    # Version 1 answered until version 2 took over (not before its last byte was written), and
    # never after: every request version 1 answered was sent before any version 2 answer came.
    assert during
    assert available > completed
    assert all(answer.version == 1 for answer in answers if answer.received < completed)
    assert max(answer.sent for answer in answers if answer.version == 1) < min(
        answer.received for answer in answers if answer.version == 2)
    assert all(answer.version == 2 for answer in answers if answer.sent > available)
    # The longest gap between answers is printed, not asserted: it is a timing (0.02-0.25 s on
    # idle cores, 4.2 s once under CI's two busy workers while version 2 loaded).
    assert all(counts[transport, version] for transport in ("rest", "grpc")
               for version in (1, 2)), counts


def test_a_copy_outlasting_the_retry_budget_loads_once_complete(exported, tmp_path):
    """The same, one refresh at a time: every failure of a folder that changed since the last
    one starts the count afresh, a folder left unchanged is given up after the retries, and the
    completed copy loads."""
    base = tmp_path / "toy"
    shutil.copytree(exported[1], base / "1")
    registry = ModelRegistry.from_base_path("toy", base, max_load_retries=RETRIES,
                                            load_retry_interval=0)
    registry.refresh()
    source, target = exported[2], base / "2"
    target.mkdir()
    data = (source / "saved_model.pb").read_bytes()
    size = len(data) // 5
    with (target / "saved_model.pb").open("wb") as handle:
        for start in range(0, len(data), size):  # far more attempts than the budget
            handle.write(data[start:start + size])
            handle.flush()
            registry.refresh()
            assert registry.status("toy", 2)[0].failed_loads == 1
            assert registry.get("toy").version == 1
    for _ in range(3):  # the copy stalls: the unchanged folder is retried, then given up
        registry.refresh()
    assert registry.status("toy", 2)[0].failed_loads == RETRIES + 1
    shutil.copytree(source, target, dirs_exist_ok=True)  # the copy finishes
    registry.refresh()
    assert registry.available()["toy"] == [2]
    assert registry.status("toy", 2)[0].state == "AVAILABLE"
