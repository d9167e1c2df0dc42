"""Component jobs (SCIENCE.md §7): validate a request, create the row, cancel, retry."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.db.models import ComponentJob, DatasetRecord, ModelRecord, Workspace
from backend.errors import ClientError
from backend.schemas import ComponentJobCreate, ConsistencyJobCreate
from backend.services import jobs, resources
from backend.services.analyses import ENGINE_VERSION
from backend.storage import description_key

CONSISTENCY_ORDERS = (0, 1, 2)
"""The fuzziness orders of a knowledge-consistency job (SCIENCE.md §8)."""

#: The layout of a job's stored results (2: maps of every channel); part of the cache key, so
#: a new layout is computed afresh rather than served from an older job.
RESULTS_VERSION = 2


def create(session: Session, *, workspace: Workspace, body: ComponentJobCreate) -> ComponentJob:
    model = _ready_model(session, workspace, body.model_id)
    dataset = resources.get(session, DatasetRecord, workspace=workspace, id=body.dataset_id)
    if body.layer not in (model.layers or []):
        raise ClientError(
            f"The model has no layer {body.layer!r}; choose one of its layers "
            f"({', '.join((model.layers or [])[:12])}…).",
        )
    exemplars = _exemplars(session, workspace, body, model)
    orders = sorted(set(body.orders))
    keys = [e.blob_key for e in exemplars]
    compare_key: str | list[str] | None = keys[0] if len(keys) == 1 else keys or None
    if orders[0] < 0:
        raise ClientError("Orders are numbers of ReLU layers: 0 or more.")
    job = ComponentJob(
        workspace_id=workspace.id,
        model_id=model.id,
        compare_model_id=exemplars[0].id if exemplars else None,
        second_compare_model_id=exemplars[1].id if len(exemplars) > 1 else None,
        dataset_id=dataset.id,
        layer=body.layer,
        params={
            "orders": orders,
            "width": body.width,
            "epochs": body.epochs,
            "max_samples": min(body.max_samples, dataset.n_images),
            "seed": body.seed,
            # only with exemplars: jobs without them keep their cache keys
            **({"reliability": body.reliability} if exemplars else {}),
        },
        progress_total=_trainings(len(exemplars), body.reliability) * len(orders) * body.epochs,
    )
    job.cache_key = _cache_key(model, compare_key, dataset, body.layer, job.params)
    session.add(job)
    session.commit()
    return job


def _exemplars(
    session: Session, workspace: Workspace, body: ComponentJobCreate, model: ModelRecord
) -> list[ModelRecord]:
    """The exemplary models of a §7 job, checked: ready, same input, classes and layer."""
    ids = list(body.compare_model_ids)
    if body.compare_model_id and ids and ids[0] != body.compare_model_id:
        raise ClientError(
            "Give the exemplary models in compare_model_ids only (compare_model_id is the "
            "first of them, for older clients)."
        )
    ids = ids or ([body.compare_model_id] if body.compare_model_id else [])
    rows = []
    for n, model_id in enumerate(ids, start=1):
        other = _ready_model(session, workspace, model_id)
        which = "The model to compare with" if len(ids) == 1 else f"Exemplary model {n}"
        if (other.input_shape, other.num_classes) != (model.input_shape, model.num_classes):
            raise ClientError(f"{which} must take the same input and classes.")
        if body.layer not in (other.layers or []):
            raise ClientError(f"{which} has no layer {body.layer!r}.")
        rows.append(other)
    return rows


def _trainings(exemplars: int, estimator: str) -> int:
    """Disentangler trainings of a §7 job: the model's own, then one multi-head training
    (cycle) or one per exemplar (preview)."""
    if not exemplars:
        return 1
    return 2 if estimator == "cycle" else 1 + exemplars


def _cache_key(
    model: ModelRecord,
    compare_key: str | list[str] | None,
    dataset: DatasetRecord,
    layer: str,
    params: dict[str, object],
) -> str:
    payload = {
        "engine": ENGINE_VERSION,
        "results": RESULTS_VERSION,
        "model": model.blob_key,
        "mean": model.mean,
        "std": model.std,
        "compare": compare_key,
        # the over-fitting metric is measured on the model's own training images
        "train_samples": model.train_samples,
        "dataset": dataset.blob_key or dataset.kind,
        "layer": layer,
        "params": params,
    }
    return description_key(payload)


def _ready_model(session: Session, workspace: Workspace, model_id: str) -> ModelRecord:
    model = resources.get(session, ModelRecord, workspace=workspace, id=model_id)
    if model.status != "ready":
        raise ClientError(f"The model is not ready (status: {model.status}).", 409)
    return model


def create_consistency(
    session: Session, *, workspace: Workspace, body: ConsistencyJobCreate
) -> ComponentJob:
    """A knowledge-consistency job (SCIENCE.md §8): model A at ``layer`` against model B
    at ``compare_layer``, orders 0, 1, 2, both directions, on one image set."""
    model = _ready_model(session, workspace, body.model_id)
    other = _ready_model(session, workspace, body.compare_model_id)
    dataset = resources.get(session, DatasetRecord, workspace=workspace, id=body.dataset_id)
    if (other.input_shape, other.num_classes) != (model.input_shape, model.num_classes):
        raise ClientError(
            "The two models must take the same input and have the same classes "
            "(models of the same task)."
        )
    for which, record, layer in (("A", model, body.layer), ("B", other, body.compare_layer)):
        if layer not in (record.layers or []):
            raise ClientError(
                f"Model {which} ({record.name}) has no layer {layer!r}; choose one of its "
                f"layers ({', '.join((record.layers or [])[:12])}…).",
            )
    shapes = ((model.layer_shapes or {}).get(body.layer), (other.layer_shapes or {}).get(
        body.compare_layer))  # fmt: skip
    if shapes[0] is not None and shapes[1] is not None:
        check_consistency_shapes(shapes[0], shapes[1])
    samples = min(body.max_samples, dataset.n_images)
    if samples < 20:
        raise ClientError("The image set needs at least 20 images (fit and held out).")
    params: dict[str, object] = {
        "orders": list(CONSISTENCY_ORDERS),
        "width": body.width,
        "epochs": body.epochs,
        "max_samples": samples,
        "seed": body.seed,
    }
    job = ComponentJob(
        workspace_id=workspace.id,
        kind="consistency",
        model_id=model.id,
        compare_model_id=other.id,
        dataset_id=dataset.id,
        layer=body.layer,
        compare_layer=body.compare_layer,
        params=params,
        progress_total=consistency_steps(body.epochs),
    )
    job.cache_key = _cache_key(
        model, other.blob_key, dataset, body.layer,
        {**params, "kind": "consistency", "compare_layer": body.compare_layer},
    )  # fmt: skip
    session.add(job)
    session.commit()
    return job


#: The engine's linear order reads a 5×5 window of the other feature per position, and at
#: most this many values (``conceptlens.components.consistency``, torch-free here).
LINEAR_WINDOW = 5
MAX_LINEAR_INPUTS = 4096


def check_consistency_shapes(shape_a: list[int], shape_b: list[int]) -> None:
    """A 400 before any work when the layers' shapes cannot be reconstructed one from the
    other: not a map ``[C, H, W]`` or a vector ``[D]``, or too many inputs for order 0."""
    for which, shape in (("A", shape_a), ("B", shape_b)):
        if len(shape) not in (1, 3):
            raise ClientError(
                f"The layer of model {which} gives a feature of shape {shape}; knowledge "
                "consistency needs a map [C, H, W] or a vector [D]."
            )
    for source, target, direction in (
        (shape_b, shape_a, "A from B"),
        (shape_a, shape_b, "B from A"),
    ):
        inputs = linear_inputs(source, target)
        if inputs > MAX_LINEAR_INPUTS:
            raise ClientError(
                f"Reconstructing {direction} would read {inputs} values per position linearly "
                f"(at most {MAX_LINEAR_INPUTS}); choose a layer with fewer channels."
            )


def linear_inputs(source: list[int], target: list[int]) -> int:
    """How many values of ``source`` one entry of the linear reconstruction of ``target``
    reads (the engine's ``_LinearBranch.inputs``, which a test keeps equal to this)."""
    c, h, w = (source[0], 1, 1) if len(source) == 1 else (source[0], source[1], source[2])
    if len(target) == 3:
        grid = (target[1], target[2])
    else:
        grid = (h, w) if c * h * w <= MAX_LINEAR_INPUTS else (min(h, 4), min(w, 4))
    ratio = h // grid[0] if grid[0] else 0
    if (h, w) != grid and h % grid[0] == 0 and w % grid[1] == 0 and ratio == w // grid[1]:
        c *= ratio * ratio  # resampled by pixel-unshuffle: space to channels
    return c * LINEAR_WINDOW**2 if len(target) == 3 else c * grid[0] * grid[1]


def consistency_steps(epochs: int) -> int:
    """Progress steps of a consistency job: per direction, the linear fit and the epochs of
    the two non-linear orders (:func:`conceptlens.components.consistency.knowledge_consistency`)."""
    return 2 * (1 + (len(CONSISTENCY_ORDERS) - 1) * epochs)


def visible(
    session: Session, *, workspace: Workspace, kind: str = "components"
) -> list[ComponentJob]:
    """The workspace's jobs of one ``kind`` ("components" or "consistency"), newest first."""
    return [
        j for j in resources.owned(session, ComponentJob, workspace=workspace) if j.kind == kind
    ]


def get(session: Session, *, workspace: Workspace, job_id: str) -> ComponentJob:
    job = resources.find_owned(session, ComponentJob, workspace=workspace, id=job_id)
    if job is None:
        raise ClientError("No such component analysis in this workspace.", 404)
    return job


def cancel(session: Session, job: ComponentJob) -> None:
    """End the job now, in whatever state (a worker still on it stops at its next epoch)."""
    jobs.cancel(session, job, "component analysis")


def retry(session: Session, job: ComponentJob) -> None:
    """Run again a job that is not done (failed, cancelled, interrupted or stuck)."""
    jobs.retry(session, job, "component analysis")


def delete(session: Session, job: ComponentJob) -> None:
    """Delete the job (and its share links), cancelling it first if it is still queued or
    running."""
    jobs.delete(session, job, "component analysis")
