"""Queries on a stored result (NumPy only, no torch): filter interactions, pairs, curves,
sparsity at any τ, exports. The τ and top-k sliders are served from here, never by the worker.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ClientError
from conceptlens.sampled_plan import from_arrays

Arrays = Mapping[str, np.ndarray]


def load(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


class StoredArrays(MutableMapping[str, np.ndarray]):
    """A stored result (an npz file, or its bytes) whose arrays are read on first use, each
    on its own: a request for the pair curve of an n = 20 result reads its 400 numbers, not
    the 25 MB of the whole file. Arrays set here (e.g. counts at another τ) shadow the
    stored ones; nothing is written back."""

    def __init__(self, source: Path | bytes) -> None:
        self._source = source
        self._read: dict[str, np.ndarray] = {}
        with self._open() as npz:
            self._names = list(npz.files)

    def _open(self) -> Any:
        src = self._source if isinstance(self._source, Path) else io.BytesIO(self._source)
        return np.load(src, allow_pickle=False)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._read:
            if key not in self._names:
                raise KeyError(key)
            with self._open() as npz:
                self._read[key] = npz[key]
        return self._read[key]

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        if key not in self._names:
            self._names.append(key)
        self._read[key] = value

    def __delitem__(self, key: str) -> None:
        self._names.remove(key)
        self._read.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._names  # without reading the array

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def shape(self, key: str) -> tuple[int, ...]:
        """An array's shape from its header alone (its data is not read)."""
        if key in self._read:
            return tuple(self._read[key].shape)
        if key not in self._names:
            raise KeyError(key)
        src = self._source if isinstance(self._source, Path) else io.BytesIO(self._source)
        with zipfile.ZipFile(src) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(member)
        return tuple(shape)


def stored(blobs: Any, key: str) -> StoredArrays:
    """The result stored under ``key``, read lazily: straight from its file when the blob
    store has files (:class:`~backend.storage.LocalBlobStore`), else from its bytes."""
    path = getattr(blobs, "path", None)
    if path is not None:
        target = Path(path(key))
        if not target.exists():
            raise KeyError(key)
        return StoredArrays(target)
    return StoredArrays(blobs.get(key))


def n_players(arrays: Arrays) -> int:
    if isinstance(arrays, StoredArrays):
        size = math.prod(arrays.shape("interactions"))
    else:
        size = int(arrays["interactions"].size)
    return int(size).bit_length() - 1


def popcounts(size: int) -> np.ndarray:
    return np.bitwise_count(np.arange(size, dtype=np.uint64)).astype(np.int64)


def check_player(player: int, n: int, what: str) -> None:
    """A :class:`ClientError` (400) unless ``player`` is one of the ``n`` players."""
    if not 0 <= player < n:
        raise ClientError(f"{what} must be a player in 0–{n - 1}; {player} is not.")


def players_of(mask: int, n: int) -> list[int]:
    return [i for i in range(n) if (mask >> i) & 1]


def interactions(
    arrays: Arrays,
    *,
    order: int | None = None,
    contains: list[int] | None = None,
    tau: float | None = None,
    sign: str | None = None,
    top_k: int = 50,
) -> dict[str, Any]:
    """Interactions ``S ≠ ∅`` filtered by order, by containing all of ``contains``, by
    normalised strength ≥ τ and by sign; strongest first, at most ``top_k``."""
    table = np.asarray(arrays["interactions"], dtype=np.float64)
    n = n_players(arrays)
    if order is not None and not 0 <= order <= n:
        raise ClientError(f"order must be in 0–{n}; {order} is not.")
    for player in contains or ():
        check_player(player, n, "contains")
    masks = np.arange(1, table.size, dtype=np.int64)
    values = table[1:]
    peak = float(np.abs(values).max()) if values.size else 0.0
    strength = np.abs(values) / peak if peak > 0 else np.zeros_like(values)
    keep = np.ones(values.size, dtype=bool)
    if order is not None:
        keep &= popcounts(table.size)[1:] == order
    if contains:
        need = sum(1 << p for p in contains)
        keep &= (masks & need) == need
    if tau is not None:
        keep &= strength >= tau
    if sign == "positive":
        keep &= values > 0
    elif sign == "negative":
        keep &= values < 0
    idx = np.flatnonzero(keep)
    total = int(idx.size)
    if total > top_k:
        idx = idx[np.argpartition(-strength[idx], top_k - 1)[:top_k]]
    idx = idx[np.argsort(-strength[idx], kind="stable")]
    rows = [
        {
            "mask": int(masks[i]),
            "players": players_of(int(masks[i]), n),
            "order": int(bin(int(masks[i])).count("1")),
            "value": float(values[i]),
            "strength": float(strength[i]),
        }
        for i in idx
    ]
    return {"n_players": n, "total": total, "data": rows, "v_empty": float(table[0])}


def pair(arrays: Arrays, i: int, j: int) -> dict[str, Any]:
    n = n_players(arrays)
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise ClientError(f"A pair needs two different players in 0–{n - 1}.")
    return {
        "i": i,
        "j": j,
        "orders": list(range(n - 1)),
        "values": arrays["multi_order"][:, i, j].tolist(),
        "shapley_interaction": float(arrays["shapley"][i, j]),
    }


def shapley_row(arrays: Arrays, i: int) -> list[float]:
    check_player(i, n_players(arrays), "i")
    return arrays["shapley"][i].tolist()


def component_map(arrays: Arrays, index: int, channel: int | None = None) -> dict[str, Any]:
    """One stored test image's component maps at ``channel`` (default: its most activated).

    ``arrays`` is a component job's maps: ``components [N, L, C', H, W]`` with the channels
    ``stored_channels [N, C']`` (every channel, or the most activated one when the layer is
    large). Results stored before channels were kept hold ``[N, L, H, W]``: one channel.
    """
    count = len(arrays["images"])
    if not 0 <= index < count:
        raise ClientError(f"index must be in 0–{count - 1}; {index} is not.")
    comps, feats, residuals = arrays["components"], arrays["features"], arrays["residuals"]
    most = int(arrays["channels"][index])
    old_layout = comps.ndim == 4  # one channel per image, without a channel axis
    if old_layout:
        comps, feats, residuals = comps[:, :, None], feats[:, None], residuals[:, None]
        stored = [most]
    else:
        stored = [int(c) for c in arrays["stored_channels"][index]]
    want = most if channel is None else channel
    if want not in stored:
        if len(stored) > 1:
            why = f"channels are 0–{len(stored) - 1}"
        elif old_layout:
            why = f"this result predates other channels: only the most activated ({most}) was kept"
        else:
            why = f"this layer is large, so only its most activated channel ({most}) was kept"
        raise ClientError(f"Channel {want} is not stored for this image; {why}.")
    k = stored.index(want)
    return {
        "count": count,
        "orders": arrays["orders"].tolist(),
        "channel": want,
        "most_activated": most,
        "channels": len(stored),
        "image": arrays["images"][index].tolist(),
        "feature": feats[index, k].tolist(),
        "components": comps[index, :, k].tolist(),
        "residual": residuals[index, k].tolist(),
    }


def sparsity(arrays: Arrays, tau: float) -> dict[str, Any]:
    """Salient counts per order and sign at any τ, from the stored interactions."""
    table = np.asarray(arrays["interactions"], dtype=np.float64)
    return {"tau": tau, **_salient(table, _peak(table), tau)}


def _peak(table: np.ndarray) -> float:
    """``max_{S≠∅} |I(S)|`` (0 for a table of the empty set alone)."""
    return float(np.abs(table[1:]).max()) if table.size > 1 else 0.0


def _salient(table: np.ndarray, peak: float, tau: float) -> dict[str, Any]:
    """Counts per order and sign of ``|I(S)| ≥ τ · peak`` over ``S ≠ ∅``."""
    values = table[1:]
    salient = (np.abs(values) >= tau * peak) & (peak > 0)
    order = popcounts(table.size)[1:]
    n = table.size.bit_length() - 1
    pos = np.bincount(order[salient & (values > 0)], minlength=n + 1)
    neg = np.bincount(order[salient & (values < 0)], minlength=n + 1)
    return {
        "positive": pos.tolist(),
        "negative": neg.tolist(),
        "total": int(pos.sum() + neg.sum()),
        "of": int(values.size),
    }


#: Points of a sorted-strength curve sent to the page (log-spaced ranks).
CURVE_POINTS = 400


def and_or(arrays: Arrays, tau: float, top_k: int) -> dict[str, Any]:
    """The AND-OR split of a result (SCIENCE.md §2–§3) beside the AND-only decomposition.

    For ``and``, ``or`` and ``and_only``: salient counts per order and sign, ``Σ|I|``, the
    strongest salient sets, and the sorted normalised strengths at log-spaced ranks. One
    rule for salience: AND and OR terms are normalised by the largest ``|I|`` among *both*
    tables (so equal terms are both salient or both not); AND-only terms by their own
    largest — the same rule for a split without OR terms."""
    if "and_interactions" not in arrays:
        raise ClientError("This analysis has no AND-OR split; run one with the AND-OR option.", 404)
    n = n_players(arrays)
    tables = {
        "and": np.asarray(arrays["and_interactions"], dtype=np.float64),
        "or": np.asarray(arrays["or_interactions"], dtype=np.float64),
        "and_only": np.asarray(arrays["interactions"], dtype=np.float64),
    }
    joint = max(_peak(tables["and"]), _peak(tables["or"]))
    out: dict[str, Any] = {"tau": tau, "n_players": n}
    for name, table in tables.items():
        peak = _peak(table) if name == "and_only" else joint
        out[name] = {
            **_salient(table, peak, tau),
            "sum_abs": float(np.abs(table[1:]).sum()),
            "top": _strongest(table, peak, tau, top_k, n),
            "curve": _sorted_curve(table, peak),
        }
    noise = arrays.get("or_noise")
    out["q_max"] = float(np.abs(noise).max()) if noise is not None and noise.size else 0.0
    return out


def _strongest(table: np.ndarray, peak: float, tau: float, k: int, n: int) -> list[dict[str, Any]]:
    strength = np.abs(table)
    strength[0] = 0.0
    count = min(k, strength.size - 1)
    if peak <= 0 or count <= 0:
        return []
    masks = np.argpartition(-strength, count - 1)[:count]
    masks = masks[np.argsort(-strength[masks], kind="stable")]
    return [
        {"mask": int(m), "players": players_of(int(m), n), "value": float(table[m]),
         "strength": float(strength[m] / peak)}
        for m in masks.tolist()
        if strength[m] >= tau * peak
    ]  # fmt: skip


def _sorted_curve(table: np.ndarray, peak: float) -> dict[str, list[float]]:
    strength = -np.sort(-np.abs(table[1:])) / (peak if peak > 0 else 1.0)
    ranks = np.unique(np.geomspace(1, strength.size, CURVE_POINTS).astype(np.int64))
    return {"rank": ranks.tolist(), "strength": strength[ranks - 1].tolist()}


def to_json(arrays: Arrays, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Summary plus every array as nested lists (non-finite numbers become null)."""
    return {
        "summary": dict(summary),
        "arrays": {k: _finite(np.asarray(v).tolist()) for k, v in arrays.items()},
    }


def to_csv(arrays: Arrays) -> str:
    """One row per subset: mask, players (space-separated), order, v(S), I(S). A sampled
    result: one row per order and pair: order, i, j, mean I^(m)(i,j), standard error, samples.
    The whole text of :func:`csv_chunks` (what ``export.csv`` streams)."""
    return "".join(csv_chunks(arrays))


#: Rows (or JSON numbers) per piece of a streamed export.
EXPORT_ROWS = 1 << 14


def csv_chunks(arrays: Arrays) -> Iterator[str]:
    """:func:`to_csv`'s text in pieces of about :data:`EXPORT_ROWS` rows, as ``csv.writer``
    writes them (``\\r\\n`` line ends; nothing needs quoting). Numbers are formatted a
    column at a time and the players of a mask come from two tables of 2^10 strings (the low
    and the high players), so 2^20 rows take about a second instead of a Python loop's 12 s."""
    if "interactions" not in arrays:
        yield from _sampled_csv_chunks(arrays)
        return
    yield "mask,players,order,v,interaction\r\n"
    n = n_players(arrays)
    v = np.asarray(arrays["v"], dtype=np.float64)
    table = np.asarray(arrays["interactions"], dtype=np.float64)
    low = min(n, 10)
    lo = [" ".join(map(str, players_of(x, low))) for x in range(1 << low)]
    hi = [" ".join(str(low + p) for p in players_of(y, n - low)) for y in range(1 << (n - low))]
    orders = popcounts(table.size).tolist()
    step = max(EXPORT_ROWS >> low, 1) << low  # whole blocks of the low players
    for a in range(0, table.size, step):
        b = min(a + step, table.size)
        players = [
            f"{lo_s} {hi_s}" if lo_s and hi_s else lo_s or hi_s
            for hi_s in hi[a >> low : ((b - 1) >> low) + 1]
            for lo_s in lo
        ]
        yield "".join(
            f"{mask},{who},{order},{vv!r},{ii!r}\r\n"
            for mask, who, order, vv, ii in zip(
                range(a, b), players, orders[a:b], v[a:b].tolist(), table[a:b].tolist(), strict=True
            )
        )


def _sampled_csv_chunks(arrays: Arrays) -> Iterator[str]:
    yield "order,i,j,interaction,stderr,samples\r\n"
    for part in from_arrays(dict(arrays)).values():
        mean, se = part.mean.astype(np.float64), part.se.astype(np.float64)
        count = part.count.astype(np.int64)
        pairs = part.pairs.tolist()
        for k, m in enumerate(part.orders.tolist()):
            yield "".join(
                f"{m},{i},{j},{mu!r},{sd!r},{c}\r\n"
                for (i, j), mu, sd, c in zip(
                    pairs, mean[k].tolist(), se[k].tolist(), count[k].tolist(), strict=True
                )
            )


def json_chunks(arrays: Arrays, summary: Mapping[str, Any]) -> Iterator[str]:
    """``json.dumps(to_json(arrays, summary))`` in pieces, byte for byte, without building
    the nested lists: each array is written a row of :data:`EXPORT_ROWS` numbers at a time,
    numbers formatted as ``json`` formats them (``repr``; non-finite ones as ``null``)."""
    yield '{"summary": ' + json.dumps(dict(summary)) + ', "arrays": {'
    for k, key in enumerate(arrays):
        yield (", " if k else "") + json.dumps(key) + ": "
        yield from _json_array(np.asarray(arrays[key]))
    yield "}}"


def _json_array(array: np.ndarray) -> Iterator[str]:
    if array.ndim == 0:
        yield json.dumps(_finite(array.tolist()))
        return
    if array.ndim > 1:
        yield "["
        for r in range(array.shape[0]):
            if r:
                yield ", "
            yield from _json_array(array[r])
        yield "]"
        return
    yield "["
    for a in range(0, array.size, EXPORT_ROWS):
        yield (", " if a else "") + ", ".join(_json_numbers(array[a : a + EXPORT_ROWS]))
    yield "]"


def _json_numbers(values: np.ndarray) -> list[str]:
    if values.dtype.kind == "f":
        out = list(map(repr, values.astype(np.float64).tolist()))
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            out[i] = "null"
        return out
    if values.dtype.kind in "iu":
        return list(map(str, values.tolist()))
    return [json.dumps(_finite(x)) for x in values.tolist()]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def sampled_pairs(arrays: Arrays, player: int) -> dict[str, Any]:
    """The sampled pairs with ``player`` of a sampled analysis's result, by partner: orders,
    mean ``I^(m)(i,j)``, standard error, the 95 % interval (Student t, the cell's variance
    moderated by its order's) and samples (null where a pair has none)."""
    parts = from_arrays(dict(arrays))
    if not parts:
        raise ClientError("This is not a sampled analysis.")
    n = next(iter(parts.values())).n_players
    check_player(player, n, "player")
    partners: dict[int, dict[str, list[Any]]] = {}
    for part in parts.values():
        mean, se, count = part.mean, part.se, part.count
        with np.errstate(invalid="ignore", divide="ignore"):
            lo, hi = part.interval(0.95)
        for p, (i, j) in enumerate(part.pairs.tolist()):
            if player not in (i, j):
                continue
            empty: dict[str, list[Any]] = {
                k: [] for k in ("orders", "mean", "se", "lo", "hi", "count")
            }
            row = partners.setdefault(j if i == player else i, empty)
            row["orders"] += part.orders.tolist()
            for name, values in (("mean", mean), ("se", se), ("lo", lo), ("hi", hi)):
                row[name] += [_finite(v) for v in values[:, p].tolist()]
            row["count"] += count[:, p].tolist()
    return {
        "player": player,
        "n_players": n,
        "partners": [{"player": j, **values} for j, values in sorted(partners.items())],
    }
