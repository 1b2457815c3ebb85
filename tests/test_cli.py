"""The `opinionrec` command's own plumbing: which log records it drops as known noise."""

import logging

from pipelines.cli import _KnownNoise


def test_known_beam_noise_is_dropped_and_other_warnings_kept():
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.WARNING, __file__, 1, message, None, None)

    noise = _KnownNoise()
    assert not noise.filter(record("Resource module is not available for current platform, "
                                   "memory usage cannot be fetched."))
    assert not noise.filter(record("apitools not found, and bigquery client libraries ..."))
    assert noise.filter(record("Your dataset has no reviews"))
