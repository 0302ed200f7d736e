import numpy as np
import pytest

from workloads.errors import WorkloadError
from workloads.frames import SELECTORS, register_selector, select


def test_uniform_is_every_jth_frame_from_zero():
    assert select("uniform", 300, 30).tolist() == list(range(0, 300, 10))
    assert select("uniform", 305, 30).tolist() == list(range(0, 300, 10))  # j = 305 // 30 = 10
    assert select("uniform", 59, 30).tolist() == list(range(30))  # j = 1: the first 30 frames
    assert select("uniform", 300, 6).tolist() == [0, 50, 100, 150, 200, 250]


def test_uniform_by_stride():
    assert select("uniform", 300, j=10).tolist() == list(range(0, 300, 10))
    assert select("uniform", 95, j=10).tolist() == list(range(0, 95, 10))
    assert select("uniform", 300, 5, j=10).tolist() == [0, 10, 20, 30, 40]
    with pytest.raises(WorkloadError, match="only meaningful for 'uniform'"):
        select("first", 300, j=10)
    with pytest.raises(WorkloadError, match="stride j must be >= 1"):
        select("uniform", 300, j=0)


def test_contiguous_selectors():
    assert select("first", 300, 30).tolist() == list(range(30))
    assert select("last", 300, 30).tolist() == list(range(270, 300))
    assert select("middle", 300, 30).tolist() == list(range(135, 165))
    assert select("middle", 301, 30).tolist() == list(range(135, 165))


def test_first_middle_last_takes_a_third_each():
    chosen = select("first_middle_last", 300, 30).tolist()
    assert chosen == list(range(10)) + list(range(145, 155)) + list(range(290, 300))
    uneven = select("first_middle_last", 100, 10).tolist()  # 3 + 4 + 3
    assert uneven == [0, 1, 2, 48, 49, 50, 51, 97, 98, 99]


def test_random_is_seeded_sorted_and_distinct():
    a = select("random", 300, 30, seed=7)
    assert np.array_equal(a, select("random", 300, 30, seed=7))
    assert not np.array_equal(a, select("random", 300, 30, seed=8))
    assert a.size == 30 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 300
    rng = np.random.default_rng(1)
    assert select("random", 300, 30, seed=rng).size == 30


@pytest.mark.parametrize("name", sorted(SELECTORS))
@pytest.mark.parametrize("num_frames", [0, 1, 2, 7, 29, 30, 31, 45, 299, 300])
@pytest.mark.parametrize("k", [1, 3, 6, 10, 30])
def test_every_selector_returns_k_sorted_distinct_valid_frames(name, num_frames, k):
    chosen = select(name, num_frames, k, seed=0)
    assert chosen.dtype == np.int64
    # Documented: a video with k frames or fewer yields all of them.
    assert chosen.size == min(k, num_frames)
    assert np.all(np.diff(chosen) > 0)
    if chosen.size:
        assert chosen.min() >= 0 and chosen.max() < num_frames


def test_bad_arguments_are_named():
    with pytest.raises(WorkloadError, match="unknown frame selector 'everything'"):
        select("everything", 300, 30)
    with pytest.raises(WorkloadError, match="needs k >= 1"):
        select("first", 300, 0)


def test_a_new_selector_is_one_function():
    @register_selector("every_other_test_only")
    def every_other(num_frames, k, seed):
        return np.arange(0, num_frames, 2, dtype=np.int64)[:k]

    try:
        assert select("every_other_test_only", 300, 4).tolist() == [0, 2, 4, 6]
        with pytest.raises(ValueError, match="registered twice"):
            register_selector("every_other_test_only")(every_other)
    finally:
        del SELECTORS["every_other_test_only"]
