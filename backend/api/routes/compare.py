"""Two views across runs and images (issue 13 §2): an analysis compared with another one, and
a multi-image analysis read as a data set. The same routes serve the owner
(``/analyses/{analysis_id}/…``, the other analysis by id from the same workspace) and a share
link (``/shared/{token}/…``, the other analysis by its own live share token).

No ``from __future__ import annotations`` here: the route signatures use aliases local to
:func:`run_views_router`, which FastAPI must see as objects.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from backend import compare, results
from backend.api.deps import BlobsDep, SessionDep, WorkspaceDep
from backend.api.routes.shares import shared_analysis
from backend.db.models import Analysis, AnalysisItem, ImageRecord, ModelRecord
from backend.services import analyses

WithId = Annotated[
    str,
    Query(
        alias="with",
        min_length=1,
        max_length=128,
        description="the other analysis: its id (owner) or its share token (share link)",
    ),
]


def owned_other(other: WithId, session: SessionDep, workspace: WorkspaceDep) -> Analysis:
    """The analysis to compare with, from the caller's workspace."""
    found = analyses.get(session, workspace=workspace, analysis_id=other)
    if found is None:
        raise HTTPException(404, "No such analysis to compare with in this workspace.")
    return found


def shared_other(other: WithId, session: SessionDep) -> Analysis:
    """The analysis to compare with, through its own live share link."""
    try:
        return shared_analysis(other, session)
    except HTTPException:
        raise HTTPException(
            404, "The analysis to compare with needs a live share link of its own: give its token."
        ) from None


def run_views_router(
    prefix: str, tag: str, find: Callable[..., Analysis], find_other: Callable[..., Analysis]
) -> APIRouter:
    """``/compare`` and ``/dataset`` under ``prefix``; ``find`` resolves the analysis from the
    path, ``find_other`` the one to compare with from the ``with`` parameter."""
    router = APIRouter(prefix=prefix, tags=[tag])
    AnalysisDep = Annotated[Analysis, Depends(find)]
    OtherDep = Annotated[Analysis, Depends(find_other)]

    @router.get("/compare")
    def compare_analyses(
        *,
        analysis: AnalysisDep,
        other: OtherDep,
        session: SessionDep,
        blobs: BlobsDep,
        image: Annotated[
            str | None, Query(max_length=64, description="an image both analysed (default: first)")
        ] = None,
        tau: Annotated[
            float | None,
            Query(gt=0, le=1, description="salience threshold (default: each its own)"),
        ] = None,
        top_k: Annotated[int, Query(ge=1, le=50, description="strongest salient sets shown")] = 12,
    ) -> dict[str, Any]:
        """Two analyses side by side: ``J^(m)`` of both against ``m/n``; on an image both
        analysed, each one's strongest salient sets, the patches they use, and which of
        those cover the same part of the image in the other (``common``)."""
        runs = [analysis, other]
        for run in runs:
            if not (run.summary or {}).get("J"):
                raise HTTPException(
                    409, f"{describe(session, run)['label']} has no finished image yet."
                )
        out: dict[str, Any] = {
            "a": describe(session, analysis),
            "b": describe(session, other),
            "figures": {
                "curve": compare.overlay_curves(
                    [(k, r.summary or {}, r.n_players) for k, r in zip("AB", runs, strict=True)]
                )
            },
        }
        shared = common_images(session, analysis, other)
        out["images"] = [
            {"image_id": a.image_id, "label": label, "a_item": a.id, "b_item": b.id}
            for a, b, label in shared
        ]
        if image is not None and image not in {a.image_id for a, _, _ in shared}:
            raise HTTPException(404, "That image is not among the images both analyses finished.")
        pick = next((s for s in shared if image in (None, s[0].image_id)), None)
        out["image_id"] = pick[0].image_id if pick else None
        out["salient"] = None
        if pick is None:
            out["note"] = (
                "The two analyses share no finished image: compare analyses of the same images "
                "to see their salient sets side by side."
            )
            return out
        items = pick[:2]
        out["figures"]["sparsity"] = compare.overlay_sparsity(
            [(k, i.summary or {}) for k, i in zip("AB", items, strict=True) if _exact(i)]
        )
        if any(r.params.get("mode") == "sampled" for r in runs):
            out["note"] = (
                "A sampled analysis has no table of every I(S): salient sets are shown for "
                "exact analyses only."
            )
            return out
        salient = [
            compare.salient_patches(
                results.load(blobs.get(item.result_key or "")),
                run.params,
                tau if tau is not None else float(run.params.get("tau", 0.05)),
                top_k,
            )
            for run, item in zip(runs, items, strict=True)
        ]
        salient[0]["common"] = compare.common_cells(salient[0], salient[1])
        salient[1]["common"] = compare.common_cells(salient[1], salient[0])
        out["salient"] = {"a": salient[0], "b": salient[1]}
        return out

    @router.get("/dataset")
    def dataset_view(*, analysis: AnalysisDep, session: SessionDep) -> dict[str, Any]:
        """A multi-image analysis as a data set: ``J^(m)`` and the share of salient sets by
        true label and by predicted label, and the images whose ``J^(m)`` is farthest from
        the set's (mean over orders of the absolute difference)."""
        if analysis.params.get("mode") == "sampled":
            raise HTTPException(
                409, "The data-set view needs exact interactions; this analysis is sampled."
            )
        done = [i for i in analysis.items if _exact(i) and i.variant is None]
        if len(done) < 2:
            raise HTTPException(
                409, "The data-set view needs at least two finished images in the analysis."
            )
        labels = session.get_one(ModelRecord, analysis.model_id).labels or []
        images: list[dict[str, Any]] = []
        for item in done:
            summary = item.summary or {}
            prediction = summary.get("prediction")
            images.append(
                {
                    "item_id": item.id,
                    "image_id": item.image_id,
                    "true": session.get_one(ImageRecord, item.image_id).label,
                    "predicted": _class_name(prediction, labels),
                    "summary": summary,
                }
            )
        set_curve = compare.relative([img["summary"]["strength"] for img in images])
        return compare.dataset_view(images, set_curve, analysis.n_players)

    return router


def _exact(item: AnalysisItem) -> bool:
    """A finished item with an exact summary (strengths and salient counts)."""
    summary = item.summary or {}
    return (
        item.status == "done"
        and item.result_key is not None
        and "strength" in summary
        and "salient_positive" in summary
    )


def _class_name(prediction: Any, labels: list[str]) -> str | None:
    if prediction is None:
        return None
    index = int(prediction)
    return str(labels[index]) if 0 <= index < len(labels) else str(index)


def describe(session: Any, run: Analysis) -> dict[str, Any]:
    """What a page needs to name a compared analysis."""
    model = session.get_one(ModelRecord, run.model_id)
    params = run.params
    label = (
        run.name or f"{model.name} · {params.get('grid')} grid · baseline {params.get('baseline')}"
    )
    return {
        "id": run.id,
        "name": run.name,
        "label": label,
        "model_name": model.name,
        "mode": params.get("mode", "exact"),
        "grid": params.get("grid"),
        "grid_rows": params.get("grid_rows"),
        "grid_cols": params.get("grid_cols"),
        "n_players": run.n_players,
        "baseline": params.get("baseline"),
        "output": params.get("output"),
        "target": params.get("target"),
        "tau": params.get("tau"),
        "status": run.status,
    }


def common_images(
    session: Any, a: Analysis, b: Analysis
) -> list[tuple[AnalysisItem, AnalysisItem, str | None]]:
    """Finished images (as they are, no variant) both analyses analysed, in ``a``'s order,
    with the image's label."""
    theirs = {i.image_id: i for i in b.items if i.status == "done" and i.variant is None}
    out = []
    for item in a.items:
        if item.status == "done" and item.variant is None and item.image_id in theirs:
            label = session.get_one(ImageRecord, item.image_id).label
            out.append((item, theirs[item.image_id], label))
    return out
