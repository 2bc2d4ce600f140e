"""The regression gate: a candidate against the release a device of its class runs now."""

import pytest

from tasks.config.schema import Release
from tasks.release.gate import GateRefused, check


def manifest(version="0.2.0", value=97.9, p99=0.08, split="s1", fp="f1", metric="top1"):
    return {
        "version": version,
        "metrics": {"metric": metric, "value": value, "latency_p99_ms": p99, "eval_split_sha256": split},
        "validated_on": {"fingerprint_sha256": fp},
    }


def test_a_candidate_with_no_active_release_passes():
    assert check(Release(), manifest(), None).status == "no active release"


def test_a_candidate_as_good_as_the_active_release_passes_with_both_figures():
    res = check(
        Release(max_regression=1.0, max_latency_regression=10), manifest(value=97.2, p99=0.085), manifest("0.1.0")
    )
    assert res.status == "passed"
    assert (res.candidate_value, res.active_value, res.candidate_p99_ms, res.active_p99_ms) == (97.2, 97.9, 0.085, 0.08)
    assert "0.1.0" in res.message


def test_a_candidate_worse_than_the_active_release_is_refused_naming_both_figures():
    with pytest.raises(GateRefused) as e:
        check(Release(max_regression=1.0), manifest(value=96.5), manifest("0.1.0", value=97.9))
    msg = str(e.value)
    assert "96.50" in msg and "97.90" in msg and "1.40 points lower" in msg and "0.1.0" in msg
    assert e.value.result.status == "refused"


def test_a_slower_candidate_is_refused_by_its_p99():
    with pytest.raises(GateRefused, match=r"p99 0.1 ms vs 0.08 ms active \(25.0% higher"):
        check(Release(max_latency_regression=10), manifest(p99=0.1), manifest("0.1.0", p99=0.08))


@pytest.mark.parametrize(
    "active, why",
    [
        (manifest("0.1.0", split="s0"), "different evaluation splits"),
        (manifest("0.1.0", fp="f0"), "different devices"),
        (manifest("0.1.0", metric="top5"), "judged by 'top5'"),
    ],
)
def test_figures_of_another_split_or_device_are_not_compared(active, why):
    with pytest.raises(GateRefused, match=why) as e:
        check(Release(), manifest(), active)
    assert e.value.result.status == "incomparable" and "--skip-gate" in str(e.value)


def test_skip_gate_passes_and_says_so():
    assert check(Release(), manifest(value=1.0), manifest("0.1.0"), skip=True).status == "skipped"
