"""Results of an analysis, read-only: the same routes serve the owner (``/analyses/{id}``)
and a share link (``/shared/{token}``), each with its own way to find the analysis.

No ``from __future__ import annotations`` here: the route signatures use ``AnalysisDep``, an
alias local to :func:`results_router`, which FastAPI must see as an object, not a string.
"""

import json
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response

from backend import figures, results
from backend.api.deps import BlobsDep, SessionDep, SettingsDep
from backend.db.models import Analysis, AnalysisItem, ImageRecord, ModelRecord
from backend.previews import preview_png

PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG image"}
}
EXPORTS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/octet-stream": {},
            "application/json": {"schema": {"type": "object"}},
            "text/csv": {},
        },
        "description": "the stored result as npz, JSON or CSV",
    }
}


def results_router(prefix: str, tag: str, find: Callable[..., Analysis]) -> APIRouter:
    """The result routes under ``prefix`` (``/analyses/{analysis_id}`` or ``/shared/{token}``);
    ``find`` is the dependency that resolves the analysis from the path's parameter."""
    router = APIRouter(prefix=prefix, tags=[tag])
    AnalysisDep = Annotated[Analysis, Depends(find)]

    def item_arrays(
        analysis: Analysis, item_id: str, blobs: BlobsDep
    ) -> tuple[AnalysisItem, dict[str, Any]]:
        item = next((i for i in analysis.items if i.id == item_id), None)
        if item is None:
            raise HTTPException(404, "No such image in this analysis.")
        if item.status != "done" or item.result_key is None:
            raise HTTPException(409, f"This image's results are not ready (status: {item.status}).")
        return item, results.load(blobs.get(item.result_key))

    @router.get("/items/{item_id}/interactions")
    def interactions(
        *,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        order: Annotated[int | None, Query(ge=0)] = None,
        contains: Annotated[str | None, Query(description="players, comma-separated")] = None,
        tau: Annotated[float | None, Query(gt=0, le=1)] = None,
        sign: Annotated[str | None, Query(pattern="^(positive|negative)$")] = None,
        top_k: Annotated[int, Query(ge=1, le=5000)] = 50,
    ) -> dict[str, Any]:
        _, arrays = item_arrays(analysis, item_id, blobs)
        players = _ints(contains)
        return results.interactions(
            arrays, order=order, contains=players, tau=tau, sign=sign, top_k=top_k
        )

    @router.get("/items/{item_id}/pair")
    def pair(
        *, item_id: str, analysis: AnalysisDep, blobs: BlobsDep, i: int, j: int
    ) -> dict[str, Any]:
        _, arrays = item_arrays(analysis, item_id, blobs)
        out = results.pair(arrays, i, j)
        out["figure"] = figures.pair_curve(out["values"], results.n_players(arrays), i, j)
        return out

    @router.get("/items/{item_id}/shapley")
    def shapley(*, item_id: str, analysis: AnalysisDep, blobs: BlobsDep, i: int) -> dict[str, Any]:
        _, arrays = item_arrays(analysis, item_id, blobs)
        row = results.shapley_row(arrays, i)
        return {"i": i, "values": row}

    @router.get("/items/{item_id}/sparsity")
    def sparsity(
        *,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        tau: Annotated[float, Query(gt=0, le=1)] = 0.05,
    ) -> dict[str, Any]:
        _, arrays = item_arrays(analysis, item_id, blobs)
        return results.sparsity(arrays, tau)

    @router.get("/items/{item_id}/and_or")
    def and_or(
        *,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        tau: Annotated[float, Query(gt=0, le=1)] = 0.05,
        top_k: Annotated[int, Query(ge=1, le=500)] = 12,
    ) -> dict[str, Any]:
        """The AND-OR split beside AND-only: salient counts per order and sign (one τ rule
        for AND and OR together), ``Σ|I|``, the strongest sets, sorted-strength curves."""
        _, arrays = item_arrays(analysis, item_id, blobs)
        return results.and_or(arrays, tau, top_k)

    @router.get("/items/{item_id}/figures")
    def item_figures(
        *,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        tau: Annotated[float | None, Query(gt=0, le=1)] = None,
    ) -> dict[str, Any]:
        """Plotly figure JSON (``data``, ``layout``) for every per-image chart; ``tau``
        redraws the salient counts and the threshold line from the stored interactions."""
        item, arrays = item_arrays(analysis, item_id, blobs)
        summary = dict(item.summary or {})
        if tau is not None:
            counts = results.sparsity(arrays, tau)
            arrays["salient_positive"] = np.array(counts["positive"])
            arrays["salient_negative"] = np.array(counts["negative"])
            summary["tau"] = tau
        return figures.result_figures(arrays, summary)

    @router.get("/items/{item_id}/figures/shapley")
    def shapley_figure(
        *, item_id: str, analysis: AnalysisDep, blobs: BlobsDep, i: int
    ) -> dict[str, Any]:
        """Heat map over the grid of the Shapley interaction between player ``i`` and each
        other player (cells that are not players stay blank)."""
        _, arrays = item_arrays(analysis, item_id, blobs)
        row = results.shapley_row(arrays, i)
        params = analysis.params
        rows, cols = params["grid_rows"], params["grid_cols"]
        cells = params.get("players") or list(range(rows * cols))
        grid = np.full(rows * cols, np.nan)
        grid[cells] = row
        grid[cells[i]] = np.nan
        return figures.patch_heatmap(
            grid, rows, cols, selected=cells[i],
            title=f"Shapley interaction with patch {cells[i]}",
            colorbar_title="I(i, j)",
        )  # fmt: skip

    @router.get("/items/{item_id}/image", response_class=Response, responses=PNG)
    def item_image(
        *,
        item_id: str,
        analysis: AnalysisDep,
        session: SessionDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        scale: Annotated[int, Query(ge=1, le=64)] = 1,
    ) -> Response:
        """The analysed image as the model saw it (PNG), for drawing patches over; ``scale``
        is lowered to keep the PNG within ``CONCEPTLENS_MAX_PREVIEW_PIXELS``."""
        item = next((i for i in analysis.items if i.id == item_id), None)
        if item is None:
            raise HTTPException(404, "No such image in this analysis.")
        image = session.get_one(ImageRecord, item.image_id)
        model = session.get_one(ModelRecord, analysis.model_id)
        png = preview_png(
            blobs.get(image.blob_key), model.input_shape, scale, settings.max_preview_pixels
        )
        return Response(png, media_type="image/png")

    @router.get("/figures/curve")
    def curve_figure(
        *,
        analysis: AnalysisDep,
        debias: Annotated[bool, Query(description="sampled: the debiased strength")] = False,
        by_label: Annotated[bool, Query(description="one curve per class of the images")] = False,
    ) -> dict[str, Any]:
        """``J^(m)`` over the sample set with ``F^(m)``, and each image's own curve (or each
        class's, with ``by_label``). A sampled analysis's ``J`` carries its 95 % interval
        (Student t with the jackknife's degrees of freedom), and ``F`` its own log axis."""
        summary = analysis.summary or {}
        if not summary.get("J"):
            raise HTTPException(409, "No image of this analysis has finished yet.")
        if summary.get("kind") == "sampled":
            return _sampled_curve(analysis, summary, debias=debias, by_label=by_label)
        per_image = [i.summary["J"] for i in analysis.items if i.status == "done" and i.summary]
        return figures.order_strength_curve(
            summary["J"],
            summary["F"],
            analysis.n_players,
            per_image=per_image if len(per_image) > 1 else None,
            reference=summary.get("reference"),
        )

    def _sampled_curve(
        analysis: Analysis, summary: dict[str, Any], *, debias: bool, by_label: bool
    ) -> dict[str, Any]:
        key = "J_debiased" if debias else "J"
        groups = summary.get("by_label", {}) if by_label else {}
        if groups:
            per_image, names = [g[key] for g in groups.values()], [f"class {k}" for k in groups]
        else:
            done = [i.summary for i in analysis.items if i.status == "done" and i.summary]
            strength = [np.asarray(x["strength_debiased" if debias else "strength"]) for x in done]
            per_image = [(v / v.mean()).tolist() for v in strength if v.mean() > 0]
            names = None
        return figures.order_strength_curve(
            summary[key],
            summary["F"],
            analysis.n_players,
            orders=summary["orders"],
            stderr=summary.get(key + "_half") or (2 * np.asarray(summary[key + "_se"])).tolist(),
            per_image=per_image if len(per_image) > 1 else None,
            labels=names,
            f_log_axis=True,
            reference=summary.get("reference"),
        )

    @router.get("/items/{item_id}/sampled_pairs")
    def sampled_pairs(
        *,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        player: Annotated[int, Query(ge=0)],
    ) -> dict[str, Any]:
        """Sampled ``I^(m)(i,j)`` of every sampled pair with patch ``player``: per order the
        mean over its contexts, its standard error and the number of samples."""
        _, arrays = item_arrays(analysis, item_id, blobs)
        return results.sampled_pairs(arrays, player)

    @router.get("/items/{item_id}/export.{fmt}", response_class=Response, responses=EXPORTS)
    def export(
        *,
        item_id: str,
        fmt: Annotated[str, Path(description="npz, json or csv")],
        analysis: AnalysisDep,
        blobs: BlobsDep,
    ) -> Response:
        item, arrays = item_arrays(analysis, item_id, blobs)
        name = f"conceptlens-{analysis.id[:8]}-{item.position}"
        if fmt == "npz":
            assert item.result_key is not None
            body, media = blobs.get(item.result_key), "application/octet-stream"
        elif fmt == "json":
            body, media = (
                json.dumps(results.to_json(arrays, item.summary or {})).encode(),
                "application/json",
            )
        elif fmt == "csv":
            body, media = results.to_csv(arrays).encode(), "text/csv"
        else:
            raise HTTPException(404, "Exports are npz, json or csv.")
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
        )

    return router


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise HTTPException(400, "contains must be player numbers separated by commas") from None
