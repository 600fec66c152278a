"""bench/operator_push.py's arithmetic: percentiles of rounds, counter changes and their summary
line (the benchmark itself needs the control plane and minutes; no figure is asserted)."""

from __future__ import annotations

from bench.operator_push import delta, percentile, policy_reconciles, summary, unseen


def test_nearest_rank_percentiles() -> None:
    rounds = [float(n) for n in range(1, 21)]
    assert percentile(rounds, 0.99) == 20  # p99 of 20 rounds is the slowest
    assert percentile(rounds, 0.5) == 10
    assert percentile([3.0], 0.99) == 3


def test_counter_changes_are_summed_per_label_set_and_summarised() -> None:
    before = {'reconciles_total{kind="Pod",result="success"}': 2.0}
    after = {
        'reconciles_total{kind="Pod",result="success"}': 12.0,
        'reconciles_total{kind="LlmPolicy",result="success"}': 5.0,
        'pushes_total{result="ok"}': 3.0,
        'pushes_total{result="failed"}': 0.0,
    }
    changes = delta(after, before)
    assert 'pushes_total{result="failed"}' not in changes  # unchanged counters are left out
    assert policy_reconciles(changes) == 5
    assert summary(changes, per=5) == (
        "pushes ok 0.6, reconciles LlmPolicy success 1, reconciles Pod success 2"
    )


def test_a_round_waits_for_a_version_no_earlier_round_produced() -> None:
    earlier = {"sha256:a"}
    fresh = unseen(earlier)
    earlier.add("sha256:b")  # later rounds' versions do not change this round's test
    assert not fresh("sha256:a") and fresh("sha256:b") and fresh("sha256:c")
