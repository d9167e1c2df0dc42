"""Learning dynamics (SCIENCE.md §6): generalised Jaccard similarity and strength per order."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.dynamics import similarity_per_order, strength_distribution
from conceptlens.transforms import orders


def test_a_checkpoint_equal_to_the_final_model_is_one_at_every_order() -> None:
    rng = np.random.default_rng(0)
    final = rng.normal(size=(3, 16))
    by_order, overall = similarity_per_order(final[None], final)
    assert by_order.shape == (1, 4) and overall.shape == (1,)
    assert by_order.tolist() == [[1.0] * 4]
    assert overall.tolist() == [1.0]


def test_the_negated_final_model_is_zero_at_every_order() -> None:
    rng = np.random.default_rng(1)
    final = rng.normal(size=(2, 32))
    checkpoints = np.stack([-final, final, 0.5 * final])
    by_order, overall = similarity_per_order(checkpoints, final)
    assert by_order[0].tolist() == [0.0] * 5 and overall[0] == 0.0
    assert by_order[1].tolist() == [1.0] * 5 and overall[1] == 1.0
    # half of every interaction, same signs: Σ min / Σ max = 1/2 exactly
    assert by_order[2] == pytest.approx([0.5] * 5) and overall[2] == pytest.approx(0.5)


def test_similarity_hand_computed_sums_over_sets_and_images_before_the_ratio() -> None:
    # n = 2: masks ∅, {0}, {1}, {0,1}; two images
    final = np.array([[9.0, 2.0, -1.0, 4.0], [9.0, 0.0, 3.0, -2.0]])
    ckpt = np.array([[[-5.0, 1.0, 1.0, 4.0], [0.0, 1.0, 3.0, 1.0]]])
    by_order, overall = similarity_per_order(ckpt, final)
    # order 1, per (image, set) min / max over [pos, neg]:
    #   (2 vs 1): 1 / 2;  (-1 vs 1): 0 / 2;  (0 vs 1): 0 / 1;  (3 vs 3): 3 / 3  → 4 / 8
    # order 2: (4 vs 4): 4 / 4;  (-2 vs 1): 0 / 3                             → 4 / 7
    # ∅ is left out (its values differ wildly here)
    assert by_order[0].tolist() == pytest.approx([4 / 8, 4 / 7])
    assert overall[0] == pytest.approx(8 / 15)


def test_similarity_is_nan_where_neither_model_has_an_interaction() -> None:
    final = np.zeros((1, 8))
    final[0, 1] = 1.0  # only order 1 is non-zero
    by_order, overall = similarity_per_order(np.zeros((2, 1, 8)), final)
    assert by_order[:, 0].tolist() == [0.0, 0.0]
    assert np.isnan(by_order[:, 1:]).all()
    assert overall.tolist() == [0.0, 0.0]
    by_order, overall = similarity_per_order(np.zeros((1, 1, 8)), np.zeros((1, 8)))
    assert np.isnan(by_order).all() and np.isnan(overall).all()


def test_similarity_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        similarity_per_order(np.zeros((2, 3, 8)), np.zeros((2, 8)))


def test_strength_distribution_of_a_hand_made_table() -> None:
    # T = 2 checkpoints, X = 2 images, n = 2
    tables = np.array(
        [
            [[7.0, 1.0, -1.0, 2.0], [-7.0, 3.0, -1.0, -2.0]],  # order 1: (2 + 4)/2 = 3; 2: 2
            [[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, -3.0]],  # order 1: 0; order 2: 4
        ]
    )
    out = strength_distribution(tables)
    assert out.shape == (2, 3)
    assert out == pytest.approx(np.array([[0.0, 0.6, 0.4], [0.0, 0.0, 1.0]]))


def test_strength_distribution_rows_sum_to_one_and_nan_without_interactions() -> None:
    rng = np.random.default_rng(2)
    tables = rng.normal(size=(4, 3, 32))
    tables[3, :, 1:] = 0.0  # the last checkpoint has only ∅
    out = strength_distribution(tables)
    assert out[:3, 1:].sum(axis=1) == pytest.approx([1.0] * 3)
    assert (out[:, 0] == 0).all()
    assert np.isnan(out[3, 1:]).all()
    # the unnormalised strength of order s is E_x Σ_{|S|=s} |I|
    size = orders(5)
    raw = np.array([np.abs(tables[0][:, size == s]).sum(axis=1).mean() for s in range(1, 6)])
    assert out[0, 1:] == pytest.approx(raw / raw.sum())
