"""Reading stored results and exporting them: one array read alone, exports that stream and
match their definition row by row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend import results
from backend.storage import LocalBlobStore


def exact_result(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays shaped like an exact result's, with values of every kind a float can take."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=2**n) * 10.0 ** rng.integers(-12, 12, 2**n)
    table[[3, 5, 6]] = [np.nan, np.inf, -0.0]
    v = rng.normal(size=2**n).astype(np.float32)
    v[7] = -np.inf
    return {
        "interactions": table,
        "v": v,
        "J": np.linspace(0, 1, n + 1),
        "multi_order": rng.normal(size=(n - 1, n, n)),
        "shapley": rng.normal(size=(n, n)),
        "salient_positive": np.arange(n + 1),
        "flag": np.array(True),
        "p": np.array(np.nan),
    }


def npz_file(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "result.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy stubs read ** as allow_pickle
    return path


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the npz members read (a spy on ``NpzFile.__getitem__``)."""
    seen: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self: Any, key: str) -> Any:
        seen.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    return seen


def test_one_array_is_read_without_the_others(tmp_path: Path, reads: list[str]) -> None:
    arrays = exact_result(12)
    stored = results.StoredArrays(npz_file(tmp_path, arrays))
    assert reads == []
    assert sorted(stored) == sorted(arrays) and "multi_order" in stored and "nope" not in stored
    assert results.n_players(stored) == 12  # from the header of "interactions" alone
    assert reads == []
    pair = results.pair(stored, 0, 4)
    assert pair["values"] == arrays["multi_order"][:, 0, 4].tolist()
    assert sorted(set(reads)) == ["multi_order", "shapley"]
    stored["multi_order"]  # read once, then kept
    assert reads.count("multi_order") == 1
    stored["salient_positive"] = np.zeros(3)  # shadows the stored array, writes nothing
    assert stored["salient_positive"].tolist() == [0, 0, 0]
    with pytest.raises(KeyError):
        stored["nope"]


def test_stored_reads_the_blob_file_lazily(tmp_path: Path, reads: list[str]) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    buf = io.BytesIO()
    np.savez(buf, **exact_result(10))  # type: ignore[arg-type]
    key = blobs.put(buf.getvalue())
    stored = results.stored(blobs, key)
    assert results.sparsity(stored, 0.5)["of"] == 2**10 - 1
    assert reads == ["interactions"]
    from_bytes = results.StoredArrays(buf.getvalue())  # a store without files
    assert results.n_players(from_bytes) == 10 and from_bytes["J"].size == 11
    with pytest.raises(KeyError):
        results.stored(blobs, "0" * 64)


def definition_csv(arrays: dict[str, np.ndarray]) -> str:
    """The export's definition: one csv.writer row per mask with its players, order, v, I."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["mask", "players", "order", "v", "interaction"])
    n = int(arrays["interactions"].size).bit_length() - 1
    for mask in range(2**n):
        players = " ".join(str(i) for i in range(n) if mask >> i & 1)
        v, value = float(arrays["v"][mask]), float(arrays["interactions"][mask])
        writer.writerow([mask, players, bin(mask).count("1"), repr(v), repr(value)])
    return out.getvalue()


@pytest.mark.parametrize("n", [3, 10, 16])
def test_csv_export_is_the_definition_row_by_row_and_streams(n: int, tmp_path: Path) -> None:
    arrays = exact_result(n, seed=n)
    pieces = list(results.csv_chunks(results.StoredArrays(npz_file(tmp_path, arrays))))
    assert "".join(pieces).split("\r\n") == definition_csv(arrays).split("\r\n")
    if n == 16:  # 65,536 rows come in pieces, not as one string
        assert len(pieces) > 2 and max(len(p) for p in pieces) < len("".join(pieces)) / 2
    rows = list(csv.reader(io.StringIO("".join(pieces))))
    for row in rows[1:][:: max(1, 2**n // 500)]:  # and the numbers read back exactly
        mask = int(row[0])
        assert [int(p) for p in row[1].split()] == results.players_of(mask, n)
        got = np.float64(row[4])
        want = arrays["interactions"][mask]
        assert got == want or (np.isnan(got) and np.isnan(want))


def test_json_export_is_the_definition_byte_for_byte(tmp_path: Path) -> None:
    arrays = exact_result(13)
    summary = {"tau": 0.05, "J": [0.5, float("nan")], "name": "ü"}
    stored = results.StoredArrays(npz_file(tmp_path, arrays))
    text = "".join(results.json_chunks(stored, summary))
    assert text == json.dumps(results.to_json(arrays, summary))
    back = json.loads(text)["arrays"]
    assert back["interactions"][3] is None and back["flag"] is True and back["p"] is None
    assert back["multi_order"] == arrays["multi_order"].tolist()
    assert len(list(results.json_chunks(stored, summary))) > 4  # written in pieces


def test_sampled_csv_export_is_the_definition_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """One row per part, order and pair, as ``csv.writer`` wrote them."""
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    parts = {
        k: SimpleNamespace(
            orders=np.array(orders),
            pairs=rng.integers(0, 64, size=(pairs, 2)),
            mean=rng.normal(size=(len(orders), pairs)) * 1e-3,
            se=np.where(
                rng.random((len(orders), pairs)) < 0.1, np.nan, rng.random((len(orders), pairs))
            ),
            count=rng.integers(0, 50, size=(len(orders), pairs)),
        )
        for k, (orders, pairs) in enumerate([([0, 5, 9], 7), ([30, 62], 11)])
    }
    monkeypatch.setattr(results, "from_arrays", lambda arrays: parts)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["order", "i", "j", "interaction", "stderr", "samples"])
    for part in parts.values():
        for k, m in enumerate(part.orders.tolist()):
            for p, (i, j) in enumerate(part.pairs.tolist()):
                mean, se = float(part.mean[k, p]), float(part.se[k, p])
                writer.writerow([m, i, j, repr(mean), repr(se), int(part.count[k, p])])
    assert results.to_csv({"p0_orders": np.zeros(1)}) == out.getvalue()
