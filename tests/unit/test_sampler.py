"""The sampler: seeded determinism, each pipeline stage against a numpy reference, draws, edge cases."""
from __future__ import annotations

import math
import threading
import time
from collections import Counter

import numpy as np
import pytest

from bitnet.sampling import Sampler

OFF = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}  # every filter switched off
MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------- references

def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def reference_distribution(logits, history=(), *, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                           repeat_penalty=1.0, repeat_last_n=64) -> np.ndarray:
    """The documented pipeline written plainly, with full sorts.

    Repetition penalty → top-k → top-p → min-p → temperature → softmax.
    """
    x = np.asarray(logits, dtype=np.float64).copy()
    history = list(history)
    if repeat_penalty != 1.0 and repeat_last_n != 0:
        window = history if repeat_last_n < 0 else history[-repeat_last_n:]
        for t in set(window):
            x[t] = x[t] / repeat_penalty if x[t] > 0 else x[t] * repeat_penalty
    out = np.zeros(len(x))
    if temperature == 0:
        out[int(np.argmax(x))] = 1.0
        return out
    order = [i for i in sorted(range(len(x)), key=lambda i: (-x[i], i)) if x[i] > -np.inf]
    if top_k:
        order = order[:top_k]
    p = softmax(x[order])
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p) >= top_p, True)) + 1
        order, p = order[:keep], p[:keep]
    if min_p > 0.0:
        order = [i for i, q in zip(order, p) if q >= min_p * p.max()]
    out[order] = softmax(x[order] / temperature)
    return out


def chi_square_limit(df: int) -> float:
    """Upper 0.1% point of the chi-square distribution (Wilson-Hilferty approximation)."""
    z = 3.09
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_draws_follow(sampler: Sampler, logits: np.ndarray, expected: np.ndarray, n: int) -> None:
    counts = Counter(sampler.sample(logits) for _ in range(n))
    assert set(counts) <= set(np.flatnonzero(expected)), "drew a token the distribution excludes"
    support = np.flatnonzero(expected)
    observed = np.array([counts.get(int(i), 0) for i in support], dtype=np.float64)
    wanted = expected[support] * n
    stat = float(((observed - wanted) ** 2 / wanted).sum())
    assert stat < chi_square_limit(max(len(support) - 1, 1)), (stat, observed, wanted)


def xoshiro_reference(seed: int):
    """xoshiro256** seeded by splitmix64, straight from the published algorithms."""
    state = []
    for _ in range(4):
        seed = (seed + 0x9E3779B97F4A7C15) & MASK64
        z = seed
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        state.append(z ^ (z >> 31))

    def rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & MASK64

    while True:
        s0, s1, s2, s3 = state
        yield (rotl((s1 * 5) & MASK64, 7) * 9) & MASK64
        t = (s1 << 17) & MASK64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        state = [s0, s1, s2, rotl(s3, 45)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


# ---------------------------------------------------------------- determinism and the RNG

def test_same_seed_gives_the_same_1000_tokens(rng):
    steps = [rng.normal(0, 2, 300).astype(np.float32) for _ in range(1000)]
    a, b = Sampler(seed=1234), Sampler(seed=1234)
    history: list[int] = []
    tokens_a = [a.sample(x, history) for x in steps]
    tokens_b = [b.sample(x, history) for x in steps]
    assert tokens_a == tokens_b
    assert len(set(tokens_a)) > 20  # the draws really are random, not a constant


def test_different_seeds_give_different_tokens(rng):
    x = rng.normal(0, 1, 500).astype(np.float32)
    a, b = Sampler(seed=1, **OFF), Sampler(seed=2, **OFF)
    assert [a.sample(x) for _ in range(200)] != [b.sample(x) for _ in range(200)]


def test_reseed_restarts_the_stream(rng):
    x = rng.normal(0, 1, 100).astype(np.float32)
    s = Sampler(seed=7, **OFF)
    first = [s.sample(x) for _ in range(50)]
    s.reseed(7)
    assert [s.sample(x) for _ in range(50)] == first
    assert s.seed == 7


def test_seed_none_draws_a_fresh_reportable_seed(rng):
    a, b = Sampler(), Sampler()
    assert a.seed != b.seed
    assert 0 <= a.seed < 2 ** 64
    x = rng.normal(0, 1, 200).astype(np.float32)
    replay = Sampler(seed=a.seed)
    assert [a.sample(x) for _ in range(30)] == [replay.sample(x) for _ in range(30)]


@pytest.mark.parametrize("seed", [0, 42, 2 ** 64 - 1])
def test_draws_follow_the_xoshiro256starstar_stream(seed):
    # 256 equal logits: the draw is token = floor(256 u) with u = (x >> 11) / 2^53, i.e. the top 8 bits of x.
    # This pins the stream to the published algorithm, so any platform must give these tokens.
    s = Sampler(temperature=1.0, seed=seed, **OFF)
    flat = np.zeros(256, dtype=np.float32)
    stream = xoshiro_reference(seed)
    assert [s.sample(flat) for _ in range(300)] == [next(stream) >> 56 for _ in range(300)]


def test_probabilities_does_not_advance_the_stream(rng):
    x = rng.normal(0, 1, 100).astype(np.float32)
    a, b = Sampler(seed=5), Sampler(seed=5)
    for _ in range(10):
        a.probabilities(x)
    assert [a.sample(x) for _ in range(20)] == [b.sample(x) for _ in range(20)]


# ---------------------------------------------------------------- distributions

def test_temperature_one_draws_match_softmax():
    x = np.array([1.0, 0.5, 0.0, -0.5, -1.0, 2.0, 0.25, -2.0], dtype=np.float32)
    s = Sampler(temperature=1.0, seed=11, **OFF)
    np.testing.assert_allclose(s.probabilities(x), softmax(x), rtol=1e-13)
    assert_draws_follow(s, x, softmax(x), 40_000)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_divides_the_logits(temperature):
    x = np.array([2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    s = Sampler(temperature=temperature, seed=3, **OFF)
    expected = softmax(x / temperature)
    np.testing.assert_allclose(s.probabilities(x), expected, rtol=1e-13)
    assert_draws_follow(s, x, expected, 20_000)


def test_lower_temperature_sharpens_higher_flattens(rng):
    x = rng.normal(0, 1, 50).astype(np.float32)

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    probs = [Sampler(temperature=t, **OFF).probabilities(x) for t in (0.25, 0.5, 1.0, 2.0, 4.0)]
    entropies = [entropy(p) for p in probs]
    assert entropies == sorted(entropies)
    top = int(np.argmax(x))
    assert [p[top] for p in probs] == sorted((p[top] for p in probs), reverse=True)


@pytest.mark.parametrize("vocab,k", [(1000, 10), (128256, 40), (50, 49)])
def test_top_k_keeps_exactly_the_k_largest(rng, vocab, k):
    x = rng.normal(0, 3, vocab).astype(np.float32)
    s = Sampler(temperature=1.0, top_k=k, top_p=1.0, min_p=0.0, seed=9)
    p = s.probabilities(x)
    kept = set(np.flatnonzero(p))
    assert kept == set(np.argsort(-x, kind="stable")[:k])
    np.testing.assert_allclose(p[sorted(kept)], softmax(x[sorted(kept)]), rtol=1e-12)
    assert {s.sample(x) for _ in range(300)} <= kept


def test_top_k_breaks_ties_by_lower_token_id():
    x = np.array([0.0, 1.0, 1.0, 1.0, 1.0, -1.0], dtype=np.float32)
    p = Sampler(top_k=2, top_p=1.0, min_p=0.0).probabilities(x)
    assert list(np.flatnonzero(p)) == [1, 2]


@pytest.mark.parametrize("top_p,kept", [(0.45, [0]), (0.7, [0, 1]), (0.85, [0, 1, 2]), (0.99, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(top_p, kept):
    x = np.log(np.array([0.5, 0.3, 0.15, 0.05])).astype(np.float32)
    p = Sampler(temperature=1.0, top_k=0, top_p=top_p, min_p=0.0).probabilities(x)
    assert list(np.flatnonzero(p)) == kept
    np.testing.assert_allclose(p[kept], softmax(x[kept]), rtol=1e-12)


@pytest.mark.parametrize("top_k", [0, 300])
def test_top_p_over_a_large_vocabulary_matches_the_sorted_reference(rng, top_k):
    # Thousands of candidates exercise the partial selection, not just the final small sort.
    for trial in range(5):
        x = rng.normal(0, 1 + trial, 8000).astype(np.float32)
        settings = {"temperature": 0.7, "top_k": top_k, "top_p": 0.9, "min_p": 0.0}
        p = Sampler(**settings).probabilities(x)
        ref = reference_distribution(x, **settings)
        assert set(np.flatnonzero(p)) == set(np.flatnonzero(ref))
        np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("top_k", [0, 500])
def test_min_p_drops_tokens_below_the_fraction_of_the_top(rng, top_k):
    x = rng.normal(0, 2, 3000).astype(np.float32)
    p1 = softmax(x)
    for min_p in (0.01, 0.1, 0.5, 1.0):
        p = Sampler(temperature=1.0, top_k=top_k, top_p=1.0, min_p=min_p).probabilities(x)
        candidates = np.argsort(-x, kind="stable")[:top_k] if top_k else np.arange(len(x))
        expected = [i for i in candidates if p1[i] >= min_p * p1.max()]
        assert set(np.flatnonzero(p)) == set(expected)


def test_full_pipeline_matches_the_reference_on_random_settings(rng):
    for _ in range(150):
        vocab = int(rng.integers(1, 400))
        x = (rng.normal(0, rng.uniform(0.1, 5), vocab)).astype(np.float32)
        x[rng.random(vocab) < 0.1] = -np.inf
        x[int(rng.integers(vocab))] = 1.0  # at least one finite logit
        history = list(rng.integers(0, vocab, int(rng.integers(0, 100))))
        settings = {
            "temperature": float(rng.choice([0.0, 0.3, 1.0, 1.7])),
            "top_k": int(rng.choice([0, 1, 5, 40, 1000])),
            "top_p": float(rng.choice([1.0, 0.95, 0.5, 0.1])),
            "min_p": float(rng.choice([0.0, 0.05, 0.3])),
            "repeat_penalty": float(rng.choice([1.0, 1.1, 1.5, 0.8])),
            "repeat_last_n": int(rng.choice([-1, 0, 8, 64])),
        }
        p = Sampler(**settings).probabilities(x, history)
        ref = reference_distribution(x, history, **settings)
        assert set(np.flatnonzero(p)) == set(np.flatnonzero(ref)), settings
        np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-300, err_msg=str(settings))
        assert abs(p.sum() - 1.0) < 1e-12


def test_probabilities_sum_to_one_with_zeros_exactly_outside_the_kept_set(rng):
    x = rng.normal(0, 2, 5000).astype(np.float32)
    x[::7] = -np.inf
    for settings in ({}, {"top_k": 0}, {"top_k": 0, "min_p": 0.0}, {"top_k": 200, "top_p": 0.5}):
        s = Sampler(**settings)
        p = s.probabilities(x)
        assert p.dtype == np.float64 and p.shape == x.shape
        assert abs(p.sum() - 1.0) < 1e-12
        assert np.all(p[::7] == 0.0)
        kept = np.flatnonzero(p)
        assert np.all(p[kept] > 0)
        assert set(np.flatnonzero(reference_distribution(x, **settings))) == set(kept)


# ---------------------------------------------------------------- repetition penalty

def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    x = np.array([2.0, -1.0, 0.5, 0.0], dtype=np.float32)
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=2.0)
    base, penalized = softmax(x), s.probabilities(x, [0, 1])
    np.testing.assert_allclose(penalized, softmax([1.0, -2.0, 0.5, 0.0]), rtol=1e-13)
    assert penalized[0] < base[0] and penalized[1] < base[1]  # both penalized tokens lose probability
    assert penalized[2] > base[2] and penalized[3] > base[3]


def test_repetition_penalty_below_one_favours_repeats():
    x = np.array([2.0, -1.0, 0.5], dtype=np.float32)
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=0.5)
    p = s.probabilities(x, [0, 1])
    np.testing.assert_allclose(p, softmax([4.0, -0.5, 0.5]), rtol=1e-13)


def test_repetition_penalty_applies_once_per_distinct_token():
    x = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.5)
    np.testing.assert_array_equal(s.probabilities(x, [0, 0, 0, 0]), s.probabilities(x, [0]))


def test_repetition_penalty_only_reads_the_last_n_tokens():
    x = np.array([2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    settings = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 2.0}
    history = [0, 1, 2, 2]
    last2 = Sampler(repeat_last_n=2, **settings).probabilities(x, history)
    np.testing.assert_allclose(last2, softmax([2.0, 1.0, 0.0, -1.0]), rtol=1e-13)  # 0 * 2 is still 0
    last3 = Sampler(repeat_last_n=3, **settings).probabilities(x, history)
    np.testing.assert_allclose(last3, softmax([2.0, 0.5, 0.0, -1.0]), rtol=1e-13)
    whole = Sampler(repeat_last_n=-1, **settings).probabilities(x, history)
    np.testing.assert_allclose(whole, softmax([1.0, 0.5, 0.0, -1.0]), rtol=1e-13)
    none = Sampler(repeat_last_n=0, **settings).probabilities(x, history)
    np.testing.assert_allclose(none, softmax(x), rtol=1e-13)


def test_history_accepts_lists_tuples_arrays_and_generators():
    x = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.3)
    expected = s.probabilities(x, [0, 2])
    for history in ((0, 2), np.array([0, 2], dtype=np.int32), np.array([0, 2], dtype=np.uint16),
                    (t for t in [0, 2])):
        np.testing.assert_array_equal(s.probabilities(x, history), expected)


# ---------------------------------------------------------------- greedy

def test_greedy_picks_the_arg_max_lowest_id_on_ties(rng):
    s = Sampler(temperature=0.0, seed=1)
    assert s.greedy and not Sampler(temperature=0.1).greedy
    x = rng.normal(0, 1, 1000).astype(np.float32)
    assert s.sample(x) == int(np.argmax(x))
    ties = np.array([0.0, 3.0, -1.0, 3.0, 3.0], dtype=np.float32)
    assert [s.sample(ties) for _ in range(20)] == [1] * 20
    np.testing.assert_array_equal(s.probabilities(ties), [0, 1, 0, 0, 0])


def test_greedy_is_applied_after_the_repetition_penalty():
    s = Sampler(temperature=0.0, repeat_penalty=4.0)
    x = np.array([3.0, 1.0, 0.5], dtype=np.float32)
    assert s.sample(x, [0]) == 1  # 3 / 4 < 1


def test_greedy_ignores_the_seed(rng):
    x = rng.normal(0, 1, 300).astype(np.float32)
    assert {Sampler(temperature=0.0, seed=seed).sample(x) for seed in range(10)} == {int(np.argmax(x))}


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("top_k", [0, 3, 100])
def test_negative_infinity_is_never_drawn(top_k):
    x = np.full(64, -np.inf, dtype=np.float32)
    x[[5, 17, 40]] = [0.0, 0.1, -0.2]
    s = Sampler(temperature=1.5, top_k=top_k, top_p=1.0, min_p=0.0, seed=2)
    assert {s.sample(x) for _ in range(500)} == {5, 17, 40}
    assert set(np.flatnonzero(s.probabilities(x))) == {5, 17, 40}


@pytest.mark.parametrize("settings", [{}, {"top_k": 0}, {"temperature": 0.0}])
def test_nan_logits_raise_a_value_error_naming_nan(settings):
    x = np.zeros(1000, dtype=np.float32)
    x[123] = np.nan
    s = Sampler(**settings)
    with pytest.raises(ValueError, match=r"NaN.*123"):
        s.sample(x)
    with pytest.raises(ValueError, match="NaN"):
        s.probabilities(x)


@pytest.mark.parametrize("settings", [{}, {"top_k": 0}, {"temperature": 0.0}])
def test_positive_infinity_and_all_negative_infinity_are_rejected(settings):
    s = Sampler(**settings)
    x = np.zeros(10, dtype=np.float32)
    x[4] = np.inf
    with pytest.raises(ValueError, match=r"\+inf.*4"):
        s.sample(x)
    with pytest.raises(ValueError, match="-inf"):
        s.sample(np.full(10, -np.inf, dtype=np.float32))


def test_all_equal_logits_are_uniform():
    x = np.full(16, 0.7, dtype=np.float32)
    s = Sampler(temperature=0.8, top_k=0, top_p=1.0, min_p=0.0, seed=4)
    np.testing.assert_allclose(s.probabilities(x), np.full(16, 1 / 16), rtol=1e-14)
    assert_draws_follow(s, x, np.full(16, 1 / 16), 16_000)
    # With every filter on, ties are kept or cut by token id, and the kept ones stay equally likely.
    p = Sampler(top_k=4).probabilities(x)
    np.testing.assert_allclose(p[:4], 0.25, rtol=1e-14)
    assert not p[4:].any()


@pytest.mark.parametrize("settings", [{}, {"top_k": 0}, {"temperature": 0.0}, {"repeat_penalty": 1.5}])
def test_a_vocabulary_of_one_always_gives_token_zero(settings):
    s = Sampler(seed=0, **settings)
    x = np.array([-3.0], dtype=np.float32)
    assert [s.sample(x, [0]) for _ in range(10)] == [0] * 10
    np.testing.assert_array_equal(s.probabilities(x, [0]), [1.0])


def test_other_real_dtypes_are_converted_to_float32():
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    x64 = np.array([0.5, 1.5, -1.0])
    np.testing.assert_array_equal(s.probabilities(x64), s.probabilities(x64.astype(np.float32)))
    np.testing.assert_allclose(s.probabilities([1, 2, 3]), softmax([1, 2, 3]), rtol=1e-13)
    strided = np.arange(20, dtype=np.float32)[::2]
    np.testing.assert_array_equal(s.probabilities(strided), s.probabilities(strided.copy()))


@pytest.mark.parametrize("logits,error,pattern", [
    (np.zeros((2, 3), np.float32), ValueError, "1-D"),
    (np.zeros(0, np.float32), ValueError, "empty"),
    (np.array(["a", "b"]), TypeError, "real-valued"),
    (np.array([1 + 2j]), TypeError, "real-valued"),
])
def test_malformed_logits_are_rejected(logits, error, pattern):
    with pytest.raises(error, match=pattern):
        Sampler().sample(logits)


@pytest.mark.parametrize("history,error,pattern", [
    ([0, 5], ValueError, r"token id 5.*\[0, 5\)"),
    ([-1], ValueError, "token id -1"),
    ([0.5, 1.0], TypeError, "integer token ids"),
    ([[0, 1]], ValueError, "1-D"),
    ([2 ** 70], ValueError, "not a token id"),
])
def test_malformed_history_is_rejected_when_the_penalty_reads_it(history, error, pattern):
    x = np.zeros(5, dtype=np.float32)
    with pytest.raises(error, match=pattern):
        Sampler(repeat_penalty=1.1).sample(x, history)
    assert Sampler(repeat_penalty=1.0).sample(x, history) in range(5)  # history unused: not read


@pytest.mark.parametrize("settings,pattern", [
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.01}, "top_p"),
    ({"top_p": float("nan")}, "top_p"),
    ({"min_p": -0.01}, "min_p"),
    ({"min_p": 1.5}, "min_p"),
    ({"repeat_penalty": 0.0}, "repeat_penalty"),
    ({"repeat_penalty": -1.0}, "repeat_penalty"),
    ({"repeat_penalty": float("inf")}, "repeat_penalty"),
    ({"repeat_last_n": -2}, "repeat_last_n"),
    ({"seed": -1}, "seed"),
    ({"seed": 2 ** 64}, "seed"),
])
def test_invalid_settings_raise_value_errors_naming_the_setting(settings, pattern):
    with pytest.raises(ValueError, match=pattern):
        Sampler(**settings)


@pytest.mark.parametrize("settings", [{"top_k": 2.5}, {"top_k": True}, {"seed": "1"}, {"temperature": "hot"},
                                      {"repeat_last_n": None}])
def test_wrongly_typed_settings_raise_type_errors(settings):
    with pytest.raises(TypeError, match=next(iter(settings))):
        Sampler(**settings)


def test_settings_are_readable_and_shown_in_repr():
    s = Sampler(temperature=0.5, top_k=7, top_p=0.9, min_p=0.1, repeat_penalty=1.2, repeat_last_n=-1, seed=3)
    assert (s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, s.repeat_last_n, s.seed) == (
        0.5, 7, 0.9, 0.1, 1.2, -1, 3)
    assert "top_k=7" in repr(s) and "seed=3" in repr(s)


# ---------------------------------------------------------------- large vocabulary, threads

def test_a_128k_vocabulary_samples_quickly(rng):
    # Partial selection keeps this far below a full sort of 128256 candidates (about 10 ms or more).
    x = rng.normal(0, 3, 128256).astype(np.float32)
    for settings, budget_s in (({"top_k": 40}, 0.004), ({"top_k": 0, "top_p": 0.95, "min_p": 0.0}, 0.03)):
        s = Sampler(seed=1, **settings)
        s.sample(x)
        times = []
        for _ in range(15):
            start = time.process_time()
            s.sample(x, [1, 2, 3])
            times.append(time.process_time() - start)
        assert sorted(times)[len(times) // 2] < budget_s, (settings, times)


def test_samplers_in_threads_match_serial_runs(rng):
    # The core releases the GIL; separate samplers must not disturb each other.
    x = rng.normal(0, 3, 128256).astype(np.float32)
    results: list[list[int]] = [[] for _ in range(4)]

    def run(seed: int) -> None:
        s = Sampler(seed=seed)
        results[seed] = [s.sample(x) for _ in range(50)]

    for seed in range(4):
        run(seed)
    serial, results = results, [[] for _ in range(4)]

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial
