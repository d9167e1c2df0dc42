"""Interop with shapiq (issue 13 §5): Möbius ↔ Harsanyi tables, and k-SII from the dividends.

Every comparison is against shapiq computing on the *same* game: ``ExactComputer`` on a
game function that returns ConceptLens's value table (or a ``UnanimityGame``) directly.
"""

from __future__ import annotations

import subprocess
import sys
from itertools import combinations

import numpy as np
import pytest

shapiq = pytest.importorskip("shapiq")

from conceptlens.games import UnanimityGame  # noqa: E402
from conceptlens.interop import from_shapiq, k_sii, k_sii_weight, to_shapiq  # noqa: E402
from conceptlens.transforms import harsanyi  # noqa: E402

N = 7
TOL = 1e-9


def table_game(v: np.ndarray, n: int):
    """A shapiq game (bool coalitions ``[batch, n]`` → values) reading the table ``v``."""

    def game(coalitions: np.ndarray) -> np.ndarray:
        masks = np.asarray(coalitions, dtype=np.int64) @ (1 << np.arange(n, dtype=np.int64))
        return v[masks]

    return game


def mask_of(players: tuple[int, ...]) -> int:
    return sum(1 << p for p in players)


def assert_same_values(ours, ref, tol: float = TOL) -> None:
    """Same index, orders, baseline and every interaction's value (missing reads as 0)."""
    assert ours.index == ref.index
    assert (ours.n_players, ours.min_order, ours.max_order) == (
        ref.n_players,
        ref.min_order,
        ref.max_order,
    )
    assert ours.baseline_value == pytest.approx(ref.baseline_value, abs=tol)
    keys = set(ours.dict_values) | set(ref.dict_values)
    worst = max(abs(ours[s] - ref[s]) for s in keys)
    assert worst <= tol, f"max |ours − shapiq| = {worst:g}"


@pytest.fixture(scope="module")
def v() -> np.ndarray:
    return np.random.default_rng(13).normal(size=1 << N) * 3.0


@pytest.fixture(scope="module")
def exact(v: np.ndarray):
    return shapiq.ExactComputer(table_game(v, N), n_players=N)


def test_to_shapiq_equals_shapiq_moebius(v: np.ndarray, exact) -> None:
    ours = to_shapiq(harsanyi(v), N)
    ref = exact("Moebius")
    assert ours.index == "Moebius"
    assert (ours.n_players, ours.min_order, ours.max_order) == (N, 0, N)
    assert ours.baseline_value == v[0]
    assert ours.estimated is False
    assert_same_values(ours, ref)
    # all 2**n subsets, in shapiq's own lookup order (by size, then lexicographic)
    assert list(ours.dict_values) == list(ref.dict_values)
    assert len(ours.dict_values) == 1 << N


def test_from_shapiq_equals_harsanyi(v: np.ndarray, exact) -> None:
    table, n = from_shapiq(exact("Moebius"))
    assert n == N
    assert table.shape == (1 << N,)
    np.testing.assert_allclose(table, harsanyi(v), rtol=0, atol=TOL)


def test_values_sit_at_their_bitmask() -> None:
    """``I[0b0110]`` is the interaction of players 1 and 2, etc. (bit i ⇔ player i)."""
    table = np.arange(16, dtype=np.float64)
    iv = to_shapiq(table, 4)
    for size in range(5):
        for players in combinations(range(4), size):
            assert iv[players] == float(mask_of(players))
    assert iv[(1, 2)] == 6.0 and iv[(3,)] == 8.0 and iv[()] == 0.0


def test_round_trips_are_exact(v: np.ndarray, exact) -> None:
    table = harsanyi(v)
    back, n = from_shapiq(to_shapiq(table, N))
    assert n == N
    assert np.array_equal(back, table)  # bit for bit
    ref = exact("Moebius")
    again = to_shapiq(*from_shapiq(ref))
    assert again.dict_values == ref.dict_values  # bit for bit, same order of keys
    assert again.baseline_value == ref.baseline_value


def test_round_trip_accepts_torch_and_sparsified() -> None:
    torch = pytest.importorskip("torch")
    table = np.zeros(1 << 5)
    table[[0, 0b00110, 0b11001]] = [0.5, 3.0, -2.0]
    iv = to_shapiq(torch.from_numpy(table), 5)
    iv.sparsify(threshold=1e-12)  # drops the zeros; missing subsets read back as 0
    assert len(iv.dict_values) == 3
    back, _ = from_shapiq(iv)
    assert np.array_equal(back, table)


def test_efficiency_as_shapiq_stores_it(v: np.ndarray, exact) -> None:
    """shapiq keeps ``()`` = v(∅) = baseline among the values, so they sum to v(N)."""
    for iv in (to_shapiq(harsanyi(v), N), exact("Moebius")):
        assert iv[()] == pytest.approx(v[0], abs=TOL)
        assert iv.baseline_value == pytest.approx(v[0], abs=TOL)
        assert float(np.sum(iv.values)) == pytest.approx(v[-1], abs=TOL)
        without_empty = sum(x for s, x in iv.dict_values.items() if s)
        assert without_empty == pytest.approx(v[-1] - v[0], abs=TOL)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_k_sii_equals_shapiq_exact(v: np.ndarray, exact, k: int) -> None:
    ours = k_sii(harsanyi(v), N, k)
    ref = exact("k-SII", k)
    assert ours.index == ref.index == ("SV" if k == 1 else "k-SII")
    assert (ours.min_order, ours.max_order) == (0, k)
    assert_same_values(ours, ref)
    assert len(ours.dict_values) == sum(len(list(combinations(range(N), s))) for s in range(k + 1))
    assert float(np.sum(ours.values)) == pytest.approx(v[-1], abs=TOL)  # efficiency


def test_k_sii_equals_shapiq_moebius_converter(v: np.ndarray) -> None:
    """shapiq's other route (Möbius → SII → k-SII) agrees, fed with our own Möbius values."""
    moebius = to_shapiq(harsanyi(v), N)
    ref = shapiq.game_theory.moebius_converter.MoebiusConverter(moebius)("k-SII", 3)
    assert_same_values(k_sii(harsanyi(v), N, 3), ref)


def test_k_sii_of_order_n_is_the_dividends(v: np.ndarray) -> None:
    table = harsanyi(v)
    iv = k_sii(table, N, N)
    assert iv.index == "k-SII" and iv.max_order == N
    back = np.zeros_like(table)
    for players, x in iv.dict_values.items():
        back[mask_of(players)] = x
    np.testing.assert_allclose(back, table, rtol=0, atol=TOL)


def test_unanimity_game_against_shapiq() -> None:
    """An analytic game: shapiq evaluates the game itself, we start from its dividends."""
    game = UnanimityGame(
        6, [[0, 1], [2], [1, 3, 4], [0, 2, 4, 5], [5]], [3.0, 2.0, -1.5, 0.75, 1.0], constant=0.25
    )
    ref = shapiq.ExactComputer(game, n_players=6)
    dividends = game.harsanyi_table()
    assert_same_values(to_shapiq(dividends, 6), ref("Moebius"))
    for k in (2, 3):
        assert_same_values(k_sii(dividends, 6, k), ref("k-SII", k))


def test_k_sii_weight_closed_forms() -> None:
    for k in (1, 2, 3, 4):
        for size in range(k, 9):
            assert k_sii_weight(size, k, k) == pytest.approx(1 / (size - k + 1), abs=1e-15)
        for size in range(1, k + 1):
            for order in range(1, size + 1):
                assert k_sii_weight(size, order, k) == (1.0 if order == size else 0.0)
    with pytest.raises(ValueError):
        k_sii_weight(2, 3, 3)


def test_other_indices_are_refused(exact) -> None:
    for index, order in (("k-SII", 2), ("SII", 2), ("STII", 2), ("k-SII", 1)):
        iv = exact(index, order)
        with pytest.raises(ValueError) as info:
            from_shapiq(iv)
        message = str(info.value)
        assert repr(iv.index) in message
        assert "only Möbius (Harsanyi)" in message and "exactly" in message
    with pytest.raises(ValueError, match="'k-SII'"):
        to_shapiq(np.zeros(8), 3, index="k-SII")


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2\\*\\*n = 8"):
        to_shapiq(np.zeros(7), 3)
    with pytest.raises(ValueError, match="2\\*\\*n"):
        to_shapiq(np.zeros((8, 2)), 3)
    with pytest.raises(ValueError, match="baseline_value"):
        to_shapiq(np.array([1.0, 0.0]), 1, baseline_value=2.0)
    assert to_shapiq(np.array([1.0, 0.0]), 1, baseline_value=1.0).baseline_value == 1.0
    for k in (0, 4):
        with pytest.raises(ValueError, match="k must be"):
            k_sii(np.zeros(8), 3, k)


def test_missing_shapiq_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "shapiq", None)  # makes `import shapiq` fail
    with pytest.raises(ImportError, match="pip install shapiq"):
        to_shapiq(np.zeros(4), 2)
    with pytest.raises(ImportError, match="pip install shapiq"):
        k_sii(np.zeros(4), 2, 1)


def test_importing_conceptlens_does_not_import_shapiq() -> None:
    code = (
        "import sys, conceptlens, conceptlens.interop; "
        "assert 'shapiq' not in sys.modules, 'shapiq imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
