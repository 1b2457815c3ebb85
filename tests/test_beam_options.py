"""Beam options: our defaults, and the warning that comes with the DirectRunner's multi-processing."""

import logging

from pipelines import beam_options


def test_defaults_name_the_direct_runner_in_memory():
    options = beam_options.pipeline_options([])
    assert beam_options.describe(options).startswith("DirectRunner (in_memory")
    assert beam_options.is_single_process(options)


def test_multi_processing_warns_that_it_can_drop_elements(caplog):
    with caplog.at_level(logging.WARNING, logger="opinionrec"):
        beam_options.pipeline_options(["--direct_num_workers", "2",
                                       "--direct_running_mode", "multi_processing"])
    assert "can drop elements before a join" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="opinionrec"):
        beam_options.pipeline_options(["--direct_num_workers", "2"])
    assert caplog.text == ""
