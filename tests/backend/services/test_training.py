"""The training service's constants agree with the engine it describes (it cannot import it:
the backend does not import torch)."""

from __future__ import annotations

from backend.services import training


def test_the_digits_split_and_architectures_are_the_engines() -> None:
    from conceptlens.models.architectures import ARCHITECTURES
    from conceptlens.models.demo import TEST_SIZE, TRAIN_SIZE

    assert (training.DIGITS_TRAIN, training.DIGITS_TEST) == (TRAIN_SIZE, TEST_SIZE)
    assert {k: spec.input_shape for k, spec in ARCHITECTURES.items()} == training.INPUTS
