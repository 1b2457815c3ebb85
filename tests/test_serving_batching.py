"""Server-side batching: concurrent requests merged into one model call, each answered with its
own rows; signatures that do not batch left alone; a full queue refused as UNAVAILABLE."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import BatchScheduler, batchable
from serving.layout import BatchingOptions, read_batching_config, write_batching_config
from serving.status import ServingStatus


def _lengths(inputs):
    """A model: the length of each text, and the text back (merged rows come as arrays)."""
    import tensorflow as tf

    text = tf.convert_to_tensor(inputs["text"])
    return {"length": tf.strings.length(text).numpy(), "echo": text.numpy()}


def _submit_all(scheduler, texts):
    import tensorflow as tf

    start = threading.Barrier(len(texts))

    def one(text):
        start.wait()
        return scheduler.submit({"text": tf.constant([text])})

    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(one, texts))


def test_concurrent_single_rows_are_merged_and_each_gets_its_own_outputs():
    texts = [f"{'x' * i}" for i in range(1, 17)]
    options = BatchingOptions(max_batch_size=32, batch_timeout_micros=200_000, num_batch_threads=1)
    scheduler = BatchScheduler(_lengths, options, "test")
    try:
        results = _submit_all(scheduler, texts)
    finally:
        scheduler.close()
    for text, result in zip(texts, results):
        assert result["length"].tolist() == [len(text)]
        assert result["echo"].tolist() == [text.encode()]
    assert max(scheduler.batch_sizes) > 1  # merged
    assert sum(scheduler.batch_sizes) == len(texts)


def test_batches_are_padded_to_an_allowed_size_and_the_padding_dropped():
    import tensorflow as tf

    options = BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1,
                              allowed_batch_sizes=(4, 8))
    scheduler = BatchScheduler(_lengths, options, "test")
    try:
        out = scheduler.submit({"text": tf.constant(["a", "bbb", "cc"])})
    finally:
        scheduler.close()
    assert out["length"].tolist() == [1, 3, 2]
    assert scheduler.batch_sizes == [4]


def test_a_full_queue_refuses_requests_as_unavailable():
    import tensorflow as tf

    release = threading.Event()

    def slow(inputs):
        release.wait(30)
        return _lengths(inputs)

    options = BatchingOptions(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1,
                              max_enqueued_batches=1)
    scheduler = BatchScheduler(slow, options, "test")
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(scheduler.submit, {"text": tf.constant(["a"])})
        time.sleep(0.5)  # taken by the one batch thread, which now waits
        queued = pool.submit(scheduler.submit, {"text": tf.constant(["b"])})
        time.sleep(0.5)
        with pytest.raises(ServingStatus) as refused:
            scheduler.submit({"text": tf.constant(["c"])})
        assert refused.value.code == "UNAVAILABLE" and "queue" in refused.value.message
        release.set()
        assert running.result(30)["length"].tolist() == [1]
        assert queued.result(30)["length"].tolist() == [1]
    scheduler.close()


def test_only_signatures_with_a_batch_dimension_everywhere_batch():
    assert batchable({"text": [-1]}, {"embedding": [-1, 384], "label": [-1]})
    assert not batchable({"user_id": [-1], "k": []}, {"item_ids": [-1, -1]})  # scalar k
    assert not batchable({"x": [-1, 3]}, {"total": []})  # a scalar output cannot be split
    assert not batchable({"x": None}, {"y": [-1]})  # unknown rank


def test_batching_config_round_trips(tmp_path):
    options = BatchingOptions(max_batch_size=16, batch_timeout_micros=500, num_batch_threads=3,
                              max_enqueued_batches=7, allowed_batch_sizes=(4, 16))
    assert read_batching_config(write_batching_config(tmp_path, options)) == options


def test_the_server_batches_text_requests_and_leaves_scalar_signatures_alone(tmp_path):
    import json
    import urllib.request

    import tensorflow as tf

    from serving import layout
    from serving.models import ModelRegistry
    from serving.server import ModelServer
    from serving.testing import save_toy_model

    root = tmp_path / "models"
    layout.export_model(save_toy_model(tmp_path / "src", 1.0), root, "toy")
    direct = tf.saved_model.load(str(root / "toy" / "1")).signatures["serving_default"]
    options = BatchingOptions(max_batch_size=32, batch_timeout_micros=100_000,
                              num_batch_threads=1)
    registry = ModelRegistry.from_base_path("toy", root / "toy", batching=options)
    texts = [f"text number {i} " + "word " * i for i in range(12)]
    with ModelServer(registry, rest_port=0, grpc_port=None, poll_seconds=0) as server:
        def post(body):
            request = urllib.request.Request(server.rest_url + "/v1/models/toy:predict",
                                             data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())

        with ThreadPoolExecutor(len(texts)) as pool:
            replies = list(pool.map(lambda t: post({"instances": [t]}), texts))
        scaled = post({"signature_name": "scaled", "inputs": {"x": [[1, 2, 3]], "k": 2}})
        servable = registry.get("toy")
    expected = direct(text=tf.constant(texts))
    for i, reply in enumerate(replies):
        (row,) = reply["predictions"]
        assert row["length"] == int(expected["length"][i])
        np.testing.assert_allclose(row["scores"], expected["scores"][i].numpy())
    assert "serving_default" in servable.schedulers and "scaled" not in servable.schedulers
    assert max(servable.schedulers["serving_default"].batch_sizes) > 1
    assert scaled["outputs"]["total"] == pytest.approx(12.0)
