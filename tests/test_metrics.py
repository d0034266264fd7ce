from math import comb

import pytest

from ponder.eval.metrics import majority_vote, pass_at_k


def brute_pass_at_k(n, c, k):
    return 1 - comb(n - c, k) / comb(n, k)


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (16, 1, 8), (5, 5, 2), (8, 0, 4), (20, 7, 20)])
def test_pass_at_k_matches_closed_form(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert pass_at_k(3, 0, 3) == 0.0


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k=5 exceeds"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 6, 1)


def test_majority_vote_ties_and_missing():
    assert majority_vote(["3", "4", "4", None, "3"]) == "3"  # tie -> first seen
    assert majority_vote(["7", None, "", "5", "5"]) == "5"
    assert majority_vote([None, ""]) is None
