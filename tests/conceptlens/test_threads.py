"""The engine's thread policy: a block runs with the threads it asks for and leaves the
previous numbers behind it; a process can be given its threads for good."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from conceptlens.threads import (
    THREAD_ENV,
    blas_threads,
    configure_process,
    limit_threads,
    thread_env,
)


@pytest.fixture
def other_threads() -> Iterator[int]:
    """A thread count unlike the current one, set for the test and undone after it."""
    before = torch.get_num_threads()
    other = 3 if before != 3 else 2
    with limit_threads(other):
        yield other
    assert torch.get_num_threads() == before


def test_a_block_runs_with_its_threads_and_restores_the_previous_ones(other_threads: int) -> None:
    pools = blas_threads()
    assert pools, "threadpoolctl sees no BLAS/OpenMP pool"
    with limit_threads(1):
        assert torch.get_num_threads() == 1
        assert set(blas_threads().values()) == {1}
    assert torch.get_num_threads() == other_threads
    assert blas_threads() == pools


def test_restored_after_an_error_and_when_nested(other_threads: int) -> None:
    pools = blas_threads()
    with pytest.raises(RuntimeError), limit_threads(1):
        with limit_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == other_threads
    assert blas_threads() == pools


def test_none_changes_nothing(other_threads: int) -> None:
    pools = blas_threads()
    with limit_threads(None):
        assert torch.get_num_threads() == other_threads
        assert blas_threads() == pools


def test_a_process_keeps_what_it_is_given(
    other_threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in THREAD_ENV:  # undone after the test
        monkeypatch.setenv(name, "7")
    configure_process(1)
    assert torch.get_num_threads() == 1
    assert set(blas_threads().values()) == {1}
    assert {name: os.environ[name] for name in THREAD_ENV} == dict.fromkeys(THREAD_ENV, "1")
    # the fixture's block puts the previous numbers back


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_thread_count_is_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"), limit_threads(bad):  # type: ignore[arg-type]
        pass
    with pytest.raises(ValueError, match="positive integer"):
        thread_env(bad)  # type: ignore[arg-type]


def test_thread_env_names_every_pool() -> None:
    assert thread_env(2) == {
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    }
