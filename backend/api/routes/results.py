"""Results of an analysis, read-only: the same routes serve the owner (``/analyses/{id}``)
and a share link (``/shared/{token}``), each with its own way to find the analysis.

No ``from __future__ import annotations`` here: the route signatures use ``AnalysisDep``, an
alias local to :func:`results_router`, which FastAPI must see as an object, not a string.
"""

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from backend import figures, results
from backend.answers import Route, answer_key, answers_for
from backend.api.deps import BlobsDep, SessionDep, SettingsDep
from backend.config import Settings
from backend.db.models import Analysis, AnalysisItem, ImageRecord, ModelRecord
from backend.previews import preview_png
from backend.storage import LocalBlobStore

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


JSON_OBJECT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "JSON"}
}


def results_router(prefix: str, tag: str, find: Callable[..., Analysis]) -> APIRouter:
    """The result routes under ``prefix`` (``/analyses/{analysis_id}`` or ``/shared/{token}``);
    ``find`` is the dependency that resolves the analysis from the path's parameter."""
    router = APIRouter(prefix=prefix, tags=[tag])
    AnalysisDep = Annotated[Analysis, Depends(find)]

    def done_item(analysis: Analysis, item_id: str) -> AnalysisItem:
        item = next((i for i in analysis.items if i.id == item_id), None)
        if item is None:
            raise HTTPException(404, "No such image in this analysis.")
        if item.status != "done" or item.result_key is None:
            raise HTTPException(409, f"This image's results are not ready (status: {item.status}).")
        return item

    def item_arrays(
        analysis: Analysis, item_id: str, blobs: BlobsDep
    ) -> tuple[AnalysisItem, results.StoredArrays]:
        item = done_item(analysis, item_id)
        assert item.result_key is not None
        return item, results.stored(blobs, item.result_key)

    def cached(
        request: Request,
        settings: Settings,
        key: dict[str, Any] | None,
        make: Callable[[], Any],
        *,
        persist: bool = False,
        item: AnalysisItem | None = None,
    ) -> Response:
        """The answer ``make()`` builds, kept under ``key`` (``None``: not kept; for what
        is unfinished) — see :mod:`backend.answers`. An answer about one finished ``item``
        is then served at this URL by :class:`~backend.answers.FastAnswers`."""
        digest = None if key is None else answer_key(**key)
        cache = answers_for(settings.data_dir)
        response = cache.answer(request, digest, make, persist=persist)
        if digest is not None and item is not None and item.result_key is not None:
            token = request.path_params.get("token")
            cache.route(request, Route(digest, item.analysis_id, item.id, item.result_key, token))
        return response

    def item_answer(
        request: Request,
        settings: Settings,
        analysis: Analysis,
        item_id: str,
        blobs: LocalBlobStore,
        make: Callable[[results.StoredArrays], Any],
        **key: Any,
    ) -> Response:
        """An answer from one finished image's stored result: it cannot change, so it is
        built once per ``key`` (the route's parameters) and the result's content."""
        item = done_item(analysis, item_id)
        assert item.result_key is not None
        result_key = item.result_key
        description = {**key, "result": result_key}
        return cached(
            request,
            settings,
            description,
            lambda: make(results.stored(blobs, result_key)),
            item=item,
        )

    @router.get("/items/{item_id}/interactions", response_class=Response, responses=JSON_OBJECT)
    def interactions(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        order: Annotated[int | None, Query(ge=0)] = None,
        contains: Annotated[str | None, Query(description="players, comma-separated")] = None,
        tau: Annotated[float | None, Query(gt=0, le=1)] = None,
        sign: Annotated[str | None, Query(pattern="^(positive|negative)$")] = None,
        top_k: Annotated[int, Query(ge=1, le=5000)] = 50,
    ) -> Response:
        players = _ints(contains)
        return item_answer(
            request, settings, analysis, item_id, blobs,
            lambda arrays: results.interactions(
                arrays, order=order, contains=players, tau=tau, sign=sign, top_k=top_k
            ),
            route="interactions", order=order, contains=players, tau=tau, sign=sign, top_k=top_k,
        )  # fmt: skip

    @router.get("/items/{item_id}/pair", response_class=Response, responses=JSON_OBJECT)
    def pair(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        i: int,
        j: int,
    ) -> Response:
        def make(arrays: results.StoredArrays) -> dict[str, Any]:
            out = results.pair(arrays, i, j)
            out["figure"] = figures.pair_curve(out["values"], results.n_players(arrays), i, j)
            return out

        return item_answer(
            request, settings, analysis, item_id, blobs, make, route="pair", i=i, j=j
        )

    @router.get("/items/{item_id}/shapley", response_class=Response, responses=JSON_OBJECT)
    def shapley(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        i: int,
    ) -> Response:
        return item_answer(
            request, settings, analysis, item_id, blobs,
            lambda arrays: {"i": i, "values": results.shapley_row(arrays, i)},
            route="shapley", i=i,
        )  # fmt: skip

    @router.get("/items/{item_id}/sparsity", response_class=Response, responses=JSON_OBJECT)
    def sparsity(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        tau: Annotated[float, Query(gt=0, le=1)] = 0.05,
    ) -> Response:
        return item_answer(
            request, settings, analysis, item_id, blobs,
            lambda arrays: results.sparsity(arrays, tau), route="sparsity", tau=tau,
        )  # fmt: skip

    @router.get("/items/{item_id}/and_or", response_class=Response, responses=JSON_OBJECT)
    def and_or(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        tau: Annotated[float, Query(gt=0, le=1)] = 0.05,
        top_k: Annotated[int, Query(ge=1, le=500)] = 12,
    ) -> Response:
        """The AND-OR split beside AND-only: salient counts per order and sign (one τ rule
        for AND and OR together), ``Σ|I|``, the strongest sets, sorted-strength curves."""
        return item_answer(
            request, settings, analysis, item_id, blobs,
            lambda arrays: results.and_or(arrays, tau, top_k), route="and_or", tau=tau, top_k=top_k,
        )  # fmt: skip

    @router.get("/items/{item_id}/figures", response_class=Response, responses=JSON_OBJECT)
    def item_figures(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        tau: Annotated[float | None, Query(gt=0, le=1)] = None,
    ) -> Response:
        """Plotly figure JSON (``data``, ``layout``) for every per-image chart; ``tau``
        redraws the salient counts and the threshold line from the stored interactions.
        Built once per image and τ, then served as stored (also across restarts)."""
        item = done_item(analysis, item_id)
        assert item.result_key is not None
        result_key, summary = item.result_key, dict(item.summary or {})

        def make() -> dict[str, Any]:
            arrays = results.stored(blobs, result_key)
            if tau is not None:
                counts = results.sparsity(arrays, tau)
                arrays["salient_positive"] = np.array(counts["positive"])
                arrays["salient_negative"] = np.array(counts["negative"])
                summary["tau"] = tau
            return figures.result_figures(arrays, summary)

        drawn_from = {k: summary.get(k) for k in ("n_players", "tau", "p", "reference")}
        key = {"route": "figures", "result": result_key, "summary": drawn_from, "tau": tau}
        return cached(request, settings, key, make, persist=True, item=item)

    @router.get("/items/{item_id}/figures/shapley", response_class=Response, responses=JSON_OBJECT)
    def shapley_figure(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        i: int,
    ) -> Response:
        """Heat map over the grid of the Shapley interaction between player ``i`` and each
        other player (cells that are not players stay blank)."""
        params = analysis.params
        rows, cols = params["grid_rows"], params["grid_cols"]
        cells = params.get("players") or list(range(rows * cols))

        def make(arrays: results.StoredArrays) -> dict[str, Any]:
            row = results.shapley_row(arrays, i)
            grid = np.full(rows * cols, np.nan)
            grid[cells] = row
            grid[cells[i]] = np.nan
            return figures.patch_heatmap(
                grid, rows, cols, selected=cells[i],
                title=f"Shapley interaction with patch {cells[i]}",
                colorbar_title="I(i, j)",
            )  # fmt: skip

        return item_answer(
            request, settings, analysis, item_id, blobs, make,
            route="figures/shapley", i=i, rows=rows, cols=cols, cells=cells,
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

    @router.get("/figures/curve", response_class=Response, responses=JSON_OBJECT)
    def curve_figure(
        *,
        request: Request,
        analysis: AnalysisDep,
        settings: SettingsDep,
        debias: Annotated[bool, Query(description="sampled: the debiased strength")] = False,
        by_label: Annotated[bool, Query(description="one curve per class of the images")] = False,
    ) -> Response:
        """``J^(m)`` over the sample set with ``F^(m)``, and each image's own curve (or each
        class's, with ``by_label``). A sampled analysis's ``J`` carries its 95 % interval
        (Student t with the jackknife's degrees of freedom), and ``F`` its own log axis.
        Built once when the analysis is done; while it runs, on every request."""
        summary = analysis.summary or {}
        if not summary.get("J"):
            raise HTTPException(409, "No image of this analysis has finished yet.")

        def make() -> dict[str, Any]:
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

        key = None
        if analysis.status == "done":
            items = sorted((i.id, i.status, i.result_key) for i in analysis.items)
            key = {
                "route": "figures/curve", "analysis": analysis.id, "summary": summary,
                "items": items, "debias": debias, "by_label": by_label,
            }  # fmt: skip
        return cached(request, settings, key, make, persist=True)

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

    @router.get("/items/{item_id}/sampled_pairs", response_class=Response, responses=JSON_OBJECT)
    def sampled_pairs(
        *,
        request: Request,
        item_id: str,
        analysis: AnalysisDep,
        blobs: BlobsDep,
        settings: SettingsDep,
        player: Annotated[int, Query(ge=0)],
    ) -> Response:
        """Sampled ``I^(m)(i,j)`` of every sampled pair with patch ``player``: per order the
        mean over its contexts, its standard error and the number of samples."""
        return item_answer(
            request, settings, analysis, item_id, blobs,
            lambda arrays: results.sampled_pairs(arrays, player),
            route="sampled_pairs", player=player,
        )  # fmt: skip

    @router.get("/items/{item_id}/export.{fmt}", response_class=Response, responses=EXPORTS)
    def export(
        *,
        item_id: str,
        fmt: Annotated[str, Path(description="npz, json or csv")],
        analysis: AnalysisDep,
        blobs: BlobsDep,
    ) -> Response:
        """The stored result: npz as stored; JSON and CSV streamed as they are written (the
        arrays are formatted a block at a time, never held as Python lists)."""
        item, arrays = item_arrays(analysis, item_id, blobs)
        name = f"conceptlens-{analysis.id[:8]}-{item.position}"
        headers = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
        if fmt == "npz":
            assert item.result_key is not None
            return FileResponse(
                blobs.path(item.result_key), media_type="application/octet-stream", headers=headers
            )
        if fmt == "json":
            pieces, media = results.json_chunks(arrays, item.summary or {}), "application/json"
        elif fmt == "csv":
            pieces, media = results.csv_chunks(arrays), "text/csv"
        else:
            raise HTTPException(404, "Exports are npz, json or csv.")
        return StreamingResponse(_encoded(pieces), media_type=media, headers=headers)

    return router


def _encoded(pieces: Iterator[str], size: int = 1 << 16) -> Iterator[bytes]:
    """UTF-8 pieces of at least ``size`` bytes (the last may be shorter)."""
    buffer: list[bytes] = []
    held = 0
    for piece in pieces:
        data = piece.encode()
        buffer.append(data)
        held += len(data)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise HTTPException(400, "contains must be player numbers separated by commas") from None
