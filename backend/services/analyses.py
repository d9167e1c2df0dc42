"""Analyses: validate a request, create rows, progress and ETA, cancel, retry."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import ORMOption

from backend.config import Settings
from backend.db.base import utcnow
from backend.db.models import (
    Analysis,
    AnalysisItem,
    Chunk,
    ComponentJob,
    DatasetRecord,
    ImageRecord,
    LogitTable,
    ModelRecord,
    TrainingRun,
    Workspace,
)
from backend.errors import ClientError
from backend.schemas import AnalysisCreate, LearnedBaselineSpec, SampledSpec, StabilitySpec
from backend.services import dataset_images, eta, resources
from backend.storage import LocalBlobStore, description_key
from conceptlens.sampled_plan import Hybrid, SampledPlan, grid_plan

#: Must match conceptlens.analysis.ENGINE_VERSION; part of every cache key.
ENGINE_VERSION = "1"


class AnalysisError(ClientError):
    """An analysis request or action the service refuses (status and message for a person)."""


def cache_key(
    model: ModelRecord,
    image: ImageRecord,
    params: dict[str, Any],
    variant: dict[str, Any] | None = None,
) -> str:
    """What determines a logit table: model and image bytes, masking, engine version.

    Target, output type, τ and top-k are applied afterwards and are not part of it. A
    sampled analysis stores sampled statistics of ``v``, which also depend on its sampling
    settings, the target and the output."""
    payload = {
        **_masked_input(model, image, params),
        "baseline": params.get("baseline", "mean"),
        "baseline_image": params.get("baseline_image_key"),
    }
    if params.get("baseline") == "learned":
        payload |= {"learned": learned_key(model, image, params)}
    if variant is not None:  # a stability item: the perturbation and what it depends on
        spec = params["stability"]
        payload["variant"] = variant
        payload["perturbation"] = (
            {"sigma": spec["sigma"], "draws": spec["draws"], "seed": spec["seed"]}
            if variant["kind"] == "noise"
            else {"epsilon": spec["epsilon"], "steps": spec["pgd_steps"], "seed": spec["seed"]}
        )
    if params.get("mode") == "sampled":
        payload |= {
            "mode": "sampled",
            "sampled": params["sampled"],
            "target": params["target"],
            "output": params["output"],
        }
    return description_key(payload)


def _masked_input(model: ModelRecord, image: ImageRecord, params: dict[str, Any]) -> dict[str, Any]:
    """What the cache keys share: the engine, model and image bytes, and the masking."""
    return {
        "engine": ENGINE_VERSION,
        "model": model.blob_key,
        "input_shape": model.input_shape,
        "mean": model.mean,
        "std": model.std,
        "image": image.blob_key,
        "grid": [params["grid_rows"], params["grid_cols"]],
        "players": params.get("players"),
        "others_present": params.get("others_present", True),
    }


def learned_key(model: ModelRecord, image: ImageRecord, params: dict[str, Any]) -> str:
    """What determines a learned baseline: model and image bytes, masking, the target and
    output whose interactions it makes sparse, and the learning settings."""
    payload = {
        **_masked_input(model, image, params),
        "target": params["target"],
        "output": params["output"],
        "learned": params["learned_baseline"],
    }
    return description_key(payload)


def create(
    session: Session,
    *,
    workspace: Workspace,
    body: AnalysisCreate,
    settings: Settings,
    blobs: LocalBlobStore,
) -> Analysis:
    checkpoints = _checkpoints(session, workspace, body) if body.mode == "dynamics" else []
    model_id = checkpoints[-1].id if checkpoints else _model_id(body)
    model = resources.get(session, ModelRecord, workspace=workspace, id=model_id)
    if model.status != "ready" or model.input_shape is None or model.num_classes is None:
        raise AnalysisError(
            f"The model is not ready for analysis (status: {model.status}"
            + (f": {model.error}" if model.error else "")
            + ").",
            409,
        )
    params = _params(body, model, settings)
    if checkpoints:
        params["series"] = body.series
        params["steps"] = [m.series_step or 0 for m in checkpoints]
    if body.baseline_image_id:
        base = resources.get(session, ImageRecord, workspace=workspace, id=body.baseline_image_id)
        params["baseline_image_key"] = base.blob_key
    images = _images(session, workspace, body, settings, blobs)
    per_image = _passes_per_image(params)
    analysis = Analysis(
        workspace_id=workspace.id,
        model_id=model.id,
        params=params,
        n_players=params["n_players"],
        progress_total=len(images) * per_image,
    )
    position = 0
    for image in images:
        for variant in variants(params) if not checkpoints else [None]:
            analysis.items.append(
                AnalysisItem(
                    image_id=image.id, position=position, variant=variant,
                    cache_key=cache_key(model, image, params, variant), progress_total=per_image,
                )
            )  # fmt: skip
            position += 1
        for checkpoint in checkpoints[:-1]:  # the last one is the analysis's own model
            variant = {"kind": "checkpoint", "model_id": checkpoint.id,
                       "step": checkpoint.series_step or 0}  # fmt: skip
            analysis.items.append(
                AnalysisItem(
                    image_id=image.id, position=position, variant=variant,
                    cache_key=cache_key(checkpoint, image, params), progress_total=per_image,
                )
            )  # fmt: skip
            position += 1
    analysis.progress_total = len(analysis.items) * per_image
    session.add(analysis)
    session.commit()
    return analysis


def estimate(
    session: Session, *, workspace: Workspace, body: AnalysisCreate, settings: Settings
) -> dict[str, Any]:
    """What :func:`create` would cost, without creating anything: images, forward passes
    (before the cache), and for a sampled analysis its orders and pairs."""
    checkpoints = _checkpoints(session, workspace, body) if body.mode == "dynamics" else []
    model_id = checkpoints[-1].id if checkpoints else _model_id(body)
    model = resources.get(session, ModelRecord, workspace=workspace, id=model_id)
    if model.input_shape is None or model.num_classes is None:
        raise AnalysisError("The model is not ready for analysis yet.", 409)
    params = _params(body, model, settings)
    if checkpoints:
        params["steps"] = [m.series_step or 0 for m in checkpoints]
    images = len(set(body.image_ids))
    if body.dataset_id is not None:
        dataset = resources.get(session, DatasetRecord, workspace=workspace, id=body.dataset_id)
        counts = dataset.class_counts or [dataset.n_images]
        if body.dataset_pick == "first" or not dataset.labelled:
            images += min(body.dataset_k, dataset.n_images)
        else:
            images += sum(min(body.dataset_k, c) for c in counts)
    inputs = len(params["steps"]) if params.get("steps") else len(variants(params))
    per_image = _passes_per_image(params) * inputs
    return {
        "images": images,
        "inputs_per_image": inputs,
        "passes_per_image": per_image,
        "forward_passes": images * per_image,
        "seconds_per_pass": model.seconds_per_pass,
        "orders": params.get("orders"),
        "pairs": params.get("pairs"),
    }


def _model_id(body: AnalysisCreate) -> str:
    if body.model_id is None:
        raise AnalysisError("Choose a model (model_id).")
    return body.model_id


def _checkpoints(session: Session, workspace: Workspace, body: AnalysisCreate) -> list[ModelRecord]:
    """The ready checkpoints of the requested series, in step order, all alike."""
    if not body.series:
        raise AnalysisError("A dynamics analysis needs a model series (checkpoints).")
    rows = [
        m for m in resources.visible(session, ModelRecord, workspace=workspace)
        if m.series == body.series
    ]  # fmt: skip
    rows.sort(key=lambda m: m.series_step or 0)
    if len(rows) < 2:
        raise AnalysisError(
            f"No model series named {body.series!r} with 2 or more checkpoints.", 404
        )
    waiting = [m for m in rows if m.status != "ready"]
    if waiting:
        raise AnalysisError(
            f"{len(waiting)} checkpoint(s) of the series are not ready yet "
            f"(step {waiting[0].series_step}: {waiting[0].status}).",
            409,
        )
    shapes = {(tuple(m.input_shape or ()), m.num_classes) for m in rows}
    if len(shapes) > 1:
        raise AnalysisError("The checkpoints of a series must share their input shape and classes.")
    return rows


def variants(params: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The inputs analysed per image: the image itself, and for a stability analysis its
    noisy copies and its attacked copy."""
    spec = params.get("stability")
    if params.get("mode") != "stability" or spec is None:
        return [None]
    noisy: list[dict[str, Any] | None] = [
        {"kind": "noise", "draw": d} for d in range(int(spec["draws"]))
    ]
    return [None, *noisy, *([{"kind": "pgd"}] if spec["adversarial"] else [])]


def _passes_per_image(params: dict[str, Any]) -> int:
    if params.get("mode") == "sampled":
        return int(params["expected_passes"])
    return 1 << int(params["n_players"])


def _images(
    session: Session,
    workspace: Workspace,
    body: AnalysisCreate,
    settings: Settings,
    blobs: LocalBlobStore,
) -> list[ImageRecord]:
    """The images to analyse: those named, then those picked from the image set, once each."""
    images: list[ImageRecord] = []
    for image_id in dict.fromkeys(body.image_ids):
        image = resources.find(session, ImageRecord, workspace=workspace, id=image_id)
        if image is None:
            raise AnalysisError(f"No such image in this workspace: {image_id}.", 404)
        images.append(image)
    if body.dataset_id is not None:
        dataset = resources.get(session, DatasetRecord, workspace=workspace, id=body.dataset_id)
        images += dataset_images.pick(
            session, workspace, dataset, body.dataset_pick, body.dataset_k, settings, blobs
        )
    images = list({image.id: image for image in images}.values())
    if not images:
        raise AnalysisError("Choose at least one image, or an image set.")
    if len(images) > settings.max_analysis_images:
        raise AnalysisError(
            f"{len(images)} images were chosen; one analysis takes at most "
            f"{settings.max_analysis_images}. Pick fewer (e.g. fewer per class).",
            413,
        )
    return images


def _params(body: AnalysisCreate, model: ModelRecord, settings: Settings) -> dict[str, Any]:
    assert model.input_shape is not None and model.num_classes is not None
    rows, cols = (int(p) for p in body.grid.split("x"))
    _, height, width = model.input_shape
    if rows > height or cols > width:
        raise AnalysisError(
            f"A {rows}x{cols} grid does not fit the model's {height}x{width} input: "
            "each patch needs at least one pixel."
        )
    cells = rows * cols
    players = None if body.players is None else sorted(set(body.players))
    if players is not None:
        bad = [p for p in players if not 0 <= p < cells]
        if bad or not players:
            raise AnalysisError(
                f"Players must be patches 0–{cells - 1} of the {rows}x{cols} grid"
                + (f"; {bad} are not." if bad else ".")
            )
    n = cells if players is None else len(players)
    if n < 2:
        raise AnalysisError("Choose at least 2 players: interactions need two patches.")
    if isinstance(body.target, int) and not 0 <= body.target < model.num_classes:
        raise AnalysisError(
            f"The model has {model.num_classes} classes; target {body.target} is not one."
        )
    params: dict[str, Any] = {
        "mode": body.mode,
        "grid": body.grid,
        "grid_rows": rows,
        "grid_cols": cols,
        "players": players,
        "n_players": n,
        "others_present": body.others_present,
        "baseline": body.baseline,
        "target": body.target,
        "output": body.output,
        "tau": body.tau,
        "top_k": body.top_k,
    }
    if body.mode == "dynamics" and n > settings.max_stability_players:
        raise AnalysisError(
            f"A dynamics analysis takes at most {settings.max_stability_players} players (each "
            f"checkpoint is analysed exactly at 2^n passes per image); this one has {n}."
        )
    if body.mode == "stability":
        params["stability"] = _stability_params(body, model, n, settings)
    elif body.stability is not None:
        raise AnalysisError("Stability settings apply to stability analyses only.")
    if body.mode == "sampled":
        if body.baseline == "learned":
            raise AnalysisError("A learned baseline needs exact interactions: use mode exact.")
        if body.and_or is not None:
            raise AnalysisError("The AND-OR split needs exact interactions: use mode exact.")
        return params | _sampled_params(body, rows, cols, settings)
    if body.sampled is not None:
        raise AnalysisError("Sampling settings apply to sampled analyses only (mode: sampled).")
    if body.baseline == "learned":
        params["learned_baseline"] = _learned_params(body, model, n, settings)
    elif body.learned_baseline is not None:
        raise AnalysisError('Learning settings apply to the baseline "learned" only.')
    if body.and_or is not None:
        if n > settings.max_and_or_players:
            raise AnalysisError(
                f"The AND-OR split takes at most {settings.max_and_or_players} players (each "
                f"of its steps transforms all 2^n sets); this analysis has {n}."
            )
        params["and_or"] = body.and_or.model_dump()
    if n > settings.max_players:
        raise AnalysisError(
            f"{n} players would need 2^{n} forward passes per image; the limit is "
            f"{settings.max_players} players. Choose a coarser grid or fewer players, or a "
            "sampled analysis."
        )
    return params


def _stability_params(
    body: AnalysisCreate, model: ModelRecord, n: int, settings: Settings
) -> dict[str, Any]:
    spec = body.stability or StabilitySpec()
    if n > settings.max_stability_players:
        raise AnalysisError(
            f"A stability analysis takes at most {settings.max_stability_players} players (each "
            f"image is analysed 1 + draws + 1 times at 2^n passes); this one has {n}."
        )
    if spec.adversarial and model.format == "onnx":
        raise AnalysisError(
            "The PGD attack needs gradients through the model, which ONNX graphs do not give "
            "here: choose a PyTorch model, or leave out the adversarial part."
        )
    if body.baseline == "learned":
        raise AnalysisError("A stability analysis uses a fixed baseline (zero, mean or blur).")
    return spec.model_dump()


def _learned_params(
    body: AnalysisCreate, model: ModelRecord, n: int, settings: Settings
) -> dict[str, Any]:
    if model.format == "onnx":
        raise AnalysisError(
            "A learned baseline needs gradients through the model, which ONNX graphs do not "
            "give here: choose a PyTorch model (TorchScript or safetensors weights)."
        )
    if n > settings.max_learned_baseline_players:
        raise AnalysisError(
            f"A learned baseline takes at most {settings.max_learned_baseline_players} players "
            f"(each step runs all 2^n masked inputs forward and backward); this analysis has {n}."
        )
    if body.baseline_image_id:
        raise AnalysisError("Choose a baseline image or a learned baseline, not both.")
    return (body.learned_baseline or LearnedBaselineSpec()).model_dump()


def _sampled_params(
    body: AnalysisCreate, rows: int, cols: int, settings: Settings
) -> dict[str, Any]:
    """The sampling settings, checked by building the plan the workers will run."""
    spec = body.sampled or SampledSpec()
    n = rows * cols
    if body.players is not None:
        raise AnalysisError("A sampled analysis uses every patch of the grid as a player.")
    if n > settings.max_sampled_players:
        raise AnalysisError(
            f"A {rows}x{cols} grid has {n} patches; sampled analyses take at most "
            f"{settings.max_sampled_players}."
        )
    if n < 4:
        raise AnalysisError("A sampled analysis needs a grid of at least 4 patches.")
    try:
        plan = plan_of({"grid_rows": rows, "grid_cols": cols, "sampled": spec.model_dump()})
    except ValueError as error:
        raise AnalysisError(f"These sampling settings do not work: {error}.") from None
    passes = math.ceil(plan.expected_passes)
    if passes > settings.max_sampled_passes:
        raise AnalysisError(
            f"These settings cost about {passes:,} forward passes per image; the limit is "
            f"{settings.max_sampled_passes:,}. Use fewer contexts, fewer pairs (random "
            "pairs or a smaller radius) or the hybrid design.",
            413,
        )
    return {
        "sampled": spec.model_dump(),
        "expected_passes": passes,
        "orders": sorted(m for part in plan.parts for m in part.orders),
        "pairs": [len(part.pairs) for part in plan.parts],
    }


def plan_of(params: dict[str, Any]) -> SampledPlan:
    """The sampled plan of an analysis's parameters (the API and the workers build the same)."""
    spec = params["sampled"]
    hybrid = spec.get("hybrid")
    return grid_plan(
        int(params["grid_rows"]),
        int(params["grid_cols"]),
        orders=spec.get("orders"),
        ratios=spec["ratios"],
        contexts=int(spec["contexts"]),
        radius=spec.get("radius"),
        random_pairs=spec.get("random_pairs"),
        seed=int(spec["seed"]),
        hybrid=None if hybrid is None else Hybrid(**hybrid),
    )


def get(
    session: Session,
    *,
    workspace: Workspace,
    analysis_id: str,
    options: Sequence[ORMOption] = (),
) -> Analysis | None:
    return resources.find_owned(
        session, Analysis, workspace=workspace, id=analysis_id, options=options
    )


def forward_passes(session: Session, analysis: Analysis) -> int:
    """Passes this analysis still costs: tables already in the cache cost none."""
    keys = {item.cache_key for item in analysis.items if item.status != "done"}
    if not keys:
        return 0
    cached = set(
        session.scalars(select(LogitTable.cache_key).where(LogitTable.cache_key.in_(keys)))
    )
    return len(keys - cached) * _passes_per_image(analysis.params)


#: An analysis's items without their chunks (64 rows for one n = 20 image, 128 for a
#: chunked sampled one): every page's poll loaded them all only to sum their progress, and
#: every roll-up of the worker read them for all items (32 of its 384 py-spy samples during
#: a 16-image stability analysis at n = 12).
ITEMS_WITHOUT_CHUNKS = selectinload(Analysis.items).lazyload(AnalysisItem.chunks)


def visible(session: Session, *, workspace: Workspace) -> list[Analysis]:
    """A workspace's analyses, newest first, their items loaded without their chunks."""
    return resources.owned(session, Analysis, workspace=workspace, options=[ITEMS_WITHOUT_CHUNKS])


def chunk_progress(session: Session, items: Iterable[AnalysisItem]) -> dict[str, int]:
    """Passes done per unfinished item that runs in chunks, summed by the database in one
    query, none when no such item (items without chunks are absent: their own
    ``progress_done`` counts; ``chunks_total`` is set whenever chunks are made)."""
    ids = [item.id for item in items if item.status != "done" and item.chunks_total]
    if not ids:
        return {}
    query = select(Chunk.item_id, func.sum(Chunk.done)).where(Chunk.item_id.in_(ids))
    rows = session.execute(query.group_by(Chunk.item_id))
    return {item_id: int(done or 0) for item_id, done in rows}


def item_progress(item: AnalysisItem, chunked: Mapping[str, int]) -> int:
    """Passes done of ``item``; ``chunked``: :func:`chunk_progress` of its analysis."""
    if item.status == "done":
        return item.progress_total
    return chunked.get(item.id, item.progress_done)


def eta_seconds(job: Analysis | ComponentJob | TrainingRun, done: int, total: int) -> float | None:
    """Time left for a running analysis, component job or training run, from its recent
    throughput (:mod:`backend.services.eta`); ``None`` before any progress and once every
    forward pass (or epoch, or batch) is done while the job is still finishing."""
    if job.status != "running":
        eta.forget(job.id)
        return None
    return eta.estimate(job.id, done, total, run_started(job))


def run_started(job: Analysis | ComponentJob | TrainingRun) -> datetime | None:
    """When the current run began: an analysis's images are claimed anew by each run (a
    retry keeps the analysis's first ``started_at``), so the latest start of a running one."""
    if isinstance(job, Analysis):
        starts = [i.started_at for i in job.items if i.status == "running" and i.started_at]
        if starts:
            return max(_aware(s) for s in starts)
    return None if job.started_at is None else _aware(job.started_at)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def cancel(session: Session, analysis: Analysis) -> None:
    """End the analysis now, in whatever state: unfinished images are cancelled and their
    leases released (a worker still on one stops at its next batch and writes nothing)."""
    if analysis.status in ("done", "failed", "cancelled"):
        raise AnalysisError(f"The analysis has already ended ({analysis.status}).", 409)
    analysis.cancel_requested = True
    for item in analysis.items:
        if item.status in ("queued", "running"):
            item.status = "cancelled"
            item.finished_at = utcnow()
            item.lease_owner = item.lease_expires_at = None
    analysis.status = "failed" if any(i.status == "failed" for i in analysis.items) else "cancelled"
    analysis.finished_at = utcnow()
    session.commit()


def retry(session: Session, analysis: Analysis) -> None:
    """Run again every image that is not done — failed, cancelled, interrupted, or stuck —
    keeping finished chunks. An image a live worker still holds is left to it (its lease)."""
    if analysis.status == "done":
        raise AnalysisError("The analysis is done; there is nothing to retry.", 409)
    analysis.status = "queued"
    analysis.cancel_requested = False
    analysis.error = None
    analysis.finished_at = None
    for item in analysis.items:
        if item.status == "done":
            continue
        item.status, item.error = "queued", None
        item.attempts = 0
        item.progress_done = sum(c.done for c in item.chunks if c.status == "done")
        for chunk in item.chunks:
            if chunk.status != "done":
                chunk.status, chunk.done, chunk.attempts = "queued", 0, 0
    session.commit()
