from tasks.reporting.selection import winners


def row(target, precision, p50, value=97.0, accepted=True):
    return {"target": target, "precision": precision, "latency_p50_ms": p50, "value": value, "accepted": accepted}


def test_the_fastest_accepted_build_wins_per_target():
    rows = [
        row("jetson", "fp16", 2.0),
        row("jetson", "int8-minmax", 1.0, accepted=False),
        row("jetson", "int8-percentile", 1.5),
        row("local", "fp32", 0.5),
        row("local", "fp16", 0.7),
    ]
    w = winners(rows)
    assert {t: r["precision"] for t, r in w.items()} == {"jetson": "int8-percentile", "local": "fp32"}


def test_a_tie_goes_to_the_better_metric_and_a_target_with_nothing_accepted_has_no_winner():
    rows = [
        row("a", "fp16", 1.0, value=97.0),
        row("a", "int8-mixed", 1.0, value=97.5),
        row("b", "fp32", 1.0, accepted=False),
        row("c", "fp32", None),
    ]
    w = winners(rows)
    assert w["a"]["precision"] == "int8-mixed" and "b" not in w and "c" not in w
