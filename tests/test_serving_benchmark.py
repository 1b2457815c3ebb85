"""benchmarks/serving.py's summary of interleaved rounds: medians, and ratios within a round."""

from benchmarks.serving import summarise_rounds


def _row(variant: str, round_index: int, p50: float, rps: float, clients: int = 8) -> dict:
    return {"workload": "recommender, 1 user", "variant": variant, "clients": clients,
            "round": round_index, "requests": 100, "failed": 1 if variant == "REST" else 0,
            "p50_ms": p50, "p95_ms": 2 * p50, "p99_ms": 3 * p50, "requests_per_second": rps,
            "texts_per_second": rps, "client_cpu_ms_per_request": 0.1,
            "server_cpu_ms_per_request": None if variant == "in-process" else 1.0}


def test_ratios_are_taken_within_each_round_then_their_median():
    # The machine is twice as fast in round 1: every figure halves, the ratios stay.
    rounds = [_row("in-process", 0, 1.0, 1000), _row("REST", 0, 2.0, 500),
              _row("in-process", 1, 0.5, 2000), _row("REST", 1, 1.0, 1000),
              _row("in-process", 2, 1.0, 1000), _row("REST", 2, 1.5, 800)]
    summary = {r["variant"]: r for r in summarise_rounds(rounds)}
    rest = summary["REST"]
    assert rest["rounds"] == 3 and rest["requests"] == 300 and rest["failed"] == 3
    assert rest["p50_ms"] == 1.5 and rest["requests_per_second"] == 800  # medians
    # Per round: 2.0, 2.0, 1.5 and 0.5, 0.5, 0.8. Ratios of the medians would give 1.5 and 0.8.
    assert rest["p50_vs_in_process"] == 2.0
    assert rest["throughput_vs_in_process"] == 0.5
    assert summary["in-process"]["p50_vs_in_process"] == 1.0
    assert summary["in-process"]["server_cpu_ms_per_request"] is None


def test_cells_without_an_in_process_run_have_no_ratio():
    summary = summarise_rounds([_row("REST", 0, 2.0, 500, clients=32)])
    assert summary[0]["p50_vs_in_process"] is None
    assert summary[0]["throughput_vs_in_process"] is None
