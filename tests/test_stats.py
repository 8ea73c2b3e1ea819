import numpy as np
import pandas as pd

import pytest

from selfaware.stats import Interval, NotRankable, bootstrap_mean_ci, pearson, summarise


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_data():
    rng = np.random.default_rng(0)
    small = pd.DataFrame({"seed": np.repeat([0, 1], 5), "q": list(range(5)) * 2, "v": rng.normal(0.5, 0.2, 10)})
    big = pd.DataFrame({"seed": np.repeat(range(8), 50), "q": list(range(50)) * 8, "v": rng.normal(0.5, 0.2, 400)})
    m1, lo1, hi1 = bootstrap_mean_ci(small, "v", ["seed", "q"])
    m2, lo2, hi2 = bootstrap_mean_ci(big, "v", ["seed", "q"])
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert hi2 - lo2 < hi1 - lo1


def test_seed_level_variation_widens_the_interval():
    # the same values, but in the second frame all variation is between seeds
    rows = [{"seed": s, "q": q, "v": float(s)} for s in range(4) for q in range(20)]
    between = pd.DataFrame(rows)
    within = between.assign(seed=0, q=range(len(between)))
    _, lo_b, hi_b = bootstrap_mean_ci(between, "v", ["seed", "q"])
    _, lo_w, hi_w = bootstrap_mean_ci(within, "v", ["seed", "q"])
    assert hi_b - lo_b > hi_w - lo_w


def test_pearson_handles_degenerate_input():
    assert np.isnan(pearson([1, 1, 1], [0, 1, 2]))
    assert pearson([0, 1, 2, 3], [0, 2, 4, 6]) == 1.0


def test_answers_to_one_question_are_a_cluster_not_independent_draws():
    # four questions, each answered 50 times alike: the answers say little beyond their four questions
    import pandas as pd

    from selfaware.stats import bootstrap_mean_ci

    rows = [{"seed": 0, "question": q, "answer": a, "value": float(q % 2)} for q in range(4) for a in range(50)]
    frame = pd.DataFrame(rows)
    _, low_pooled, high_pooled = bootstrap_mean_ci(frame, "value", ["seed"], 500)
    _, low, high = bootstrap_mean_ci(frame, "value", ["seed", "question"], 500)
    assert high - low > 3 * (high_pooled - low_pooled)


def _plain_resample(groups, rng) -> float:
    """The hierarchical bootstrap as first written: rng.choice at the innermost level, np.mean above it."""
    if isinstance(groups, np.ndarray):
        return float(rng.choice(groups, size=len(groups), replace=True).mean())
    picks = rng.integers(0, len(groups), size=len(groups))
    return float(np.mean([_plain_resample(groups[i], rng) for i in picks]))


def test_the_fast_resample_draws_and_averages_exactly_as_the_plain_one():
    # the published intervals of every page rest on this stream: seeds, questions and answers of unequal counts
    from selfaware.stats import _nest, _resample

    values = np.random.default_rng(3)
    rows = [{"seed": s, "question": q, "value": float(values.normal())}
            for s in range(3) for q in range(2 + 3 * s) for _ in range(1 + (q * 7 + s) % 5)]
    frame = pd.DataFrame(rows)
    for levels in (["seed", "question"], ["seed"], []):
        groups = _nest(frame, "value", levels)
        fast, plain = np.random.default_rng(11), np.random.default_rng(11)
        assert [_resample(groups, fast) for _ in range(300)] == [_plain_resample(groups, plain) for _ in range(300)]
        assert fast.bit_generator.state == plain.bit_generator.state  # the next interval's draws too


def _frame(seeds: int, questions: int, answers: int, seed: int = 0) -> pd.DataFrame:
    values = np.random.default_rng(seed)
    return pd.DataFrame([{"seed": s, "question": q, "value": float(values.normal())}
                         for s in range(seeds) for q in range(questions) for _ in range(answers)])


def test_the_vectorised_bootstrap_equals_one_resample_at_a_time(monkeypatch):
    # balanced designs (computed all at once from the raw stream), sizes of one (no draw), sums long enough for
    # numpy's pairwise summation, two resample runs on one generator (the second starts on a held 32-bit half,
    # as the second side of bootstrap_difference_ci does), a chunk too small for one resample, and a chunk
    # that gives up (the plain way from the same state)
    from selfaware import stats

    designs = [(3, 10, 4), (2, 5, 1), (1, 7, 3), (4, 1, 1), (1, 1, 1), (2, 3, 13), (5, 20, 2), (3, 3, 3)]
    for seeds, questions, answers in designs:
        frame = _frame(seeds, questions, answers, seeds * 100 + questions)
        for levels in (["seed", "question"], ["seed"], []):
            groups = stats._nest(frame, "value", levels)
            fast, plain = np.random.default_rng(7), np.random.default_rng(7)
            for n_boot in (257, 300):
                assert list(stats._resamples(groups, fast, n_boot)) == \
                    [_plain_resample(groups, plain) for _ in range(n_boot)], (seeds, questions, answers, levels)
                assert fast.bit_generator.state == plain.bit_generator.state
    groups = stats._nest(_frame(3, 10, 4), "value", ["seed", "question"])
    expected = [_plain_resample(groups, np.random.default_rng(1)) for _ in range(1)]
    monkeypatch.setattr(stats, "_CELLS_AT_ONCE", 7)
    assert list(stats._resamples(groups, np.random.default_rng(1), 1)) == expected
    real = stats._balanced_chunk
    monkeypatch.setattr(stats, "_balanced_chunk", lambda *a: real(*a) if a[3] % 2 else None)
    monkeypatch.setattr(stats, "_CELLS_AT_ONCE", 120 * 3)
    plain = np.random.default_rng(2)
    assert list(stats._resamples(groups, np.random.default_rng(2), 10)) == [_plain_resample(groups, plain)
                                                                             for _ in range(10)]


def test_an_unbalanced_design_is_resampled_one_at_a_time_with_the_same_result():
    from selfaware.stats import _nest, _resamples

    frame = _frame(3, 4, 2).iloc[:-3]  # the last question of the last seed has fewer answers
    groups = _nest(frame, "value", ["seed", "question"])
    plain = np.random.default_rng(5)
    assert list(_resamples(groups, np.random.default_rng(5), 200)) == [_plain_resample(groups, plain)
                                                                        for _ in range(200)]


# ---- Interval ----------------------------------------------------------------------------------------------
def _summary_row(values, seeds=1):
    frame = pd.DataFrame({"group": "g", "seed": [i % seeds for i in range(len(values))],
                          "question": range(len(values)), "v": values})
    return summarise(frame, ["group"], "v", ["seed", "question"]).iloc[0]


def test_an_interval_reads_a_summary_row_and_keeps_its_n():
    row = _summary_row([0.0, 1.0, 1.0, 0.0, 1.0])
    interval = Interval.of(row)
    assert interval.n == 5 and interval.mean == pytest.approx(0.6)
    assert interval.low <= interval.mean <= interval.high
    assert Interval.of(None) is None


def test_ranking_an_interval_of_one_observation_is_refused():
    single = Interval.of(_summary_row([0.9]))
    assert single.n == 1 and single.low == single.high == single.mean  # a point: it would "separate" from anything
    many = Interval.of(_summary_row([0.1, 0.2, 0.1, 0.2]))
    assert not single.rankable and many.rankable
    with pytest.raises(NotRankable, match=r"n=1.*n >= 2"):
        single.above(many)
    with pytest.raises(NotRankable):
        many.below(single)
    with pytest.raises(NotRankable):
        many.separated(Interval(0.5, 0.4, 0.6))  # n unknown: not evidence either


def test_ranking_two_intervals_of_enough_observations():
    high, low = Interval(0.8, 0.7, 0.9, n=10), Interval(0.2, 0.1, 0.3, n=10)
    overlapping = Interval(0.75, 0.25, 0.85, n=10)
    assert high.above(low) and low.below(high) and high.separated(low) and low.separated(high)
    assert not high.above(overlapping) and not overlapping.below(high) and not overlapping.separated(low)


def test_an_interval_formats_itself_as_the_pages_write_it():
    interval = Interval(0.4237, 0.3111, 0.5549, n=12)
    assert interval.format() == str(interval) == "0.42 [0.31, 0.55]"
    assert interval.format(".1%") == "42.4% [31.1%, 55.5%]"
    assert interval.format("+.2f") == "+0.42 [+0.31, +0.55]"
    assert interval.format(".0%", "dash") == "42% [31%-55%]"
    assert interval.format(".0%", "ci") == "42% [95% CI 31%-55%]"
    assert interval.format(".3f", bounds=".2f") == "0.424 [0.31, 0.55]"
    assert Interval(float("nan"), 0.1, 0.2).format() == "n/a"
    assert Interval.of({"mean": 0.5, "ci_low": None, "ci_high": None}).format() == "0.50"
    assert Interval(0.5, float("nan"), 0.7).format() == "0.50 [n/a, 0.70]"
