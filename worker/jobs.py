"""What the Celery tasks do, as plain functions of ids (tested in-process and via a worker).

Each step reads its rows, calls the engine, writes results: large arrays to the blob
store, job state and small results to the database (the source of truth the API reads).
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, lazyload

from backend.config import get_settings
from backend.db.base import utcnow
from backend.db.models import (
    Analysis,
    AnalysisItem,
    Chunk,
    ImageRecord,
    LearnedBaseline,
    LogitTable,
    ModelRecord,
)
from backend.db.session import session_scope
from backend.services.analyses import ITEMS_WITHOUT_CHUNKS, learned_key, plan_of
from backend.storage import LocalBlobStore
from conceptlens.aliases import ProgressFn
from conceptlens.analysis import interactions_from_logits
from conceptlens.dynamics import similarity_per_order, strength_distribution
from conceptlens.game import Cancelled, default_device
from conceptlens.images import ImageError, load_image
from conceptlens.models.loaders import ModelLoadError
from conceptlens.outputs import output_values, predicted_class
from conceptlens.pairwise import relative_strength, theory_curve
from conceptlens.players import make_baseline
from conceptlens.reference import gaussian_expected_strength, permuted_reference
from conceptlens.sampled_plan import (
    empty_result,
    from_arrays,
    image_strength,
    merge,
    run_units,
    to_arrays,
)
from conceptlens.sampling import OrderStrength, sampled_relative_strength
from conceptlens.stability import (
    OrderStat,
    consistency,
    gaussian_noise,
    instability,
    per_order,
)
from worker import leases, overlap
from worker.sandbox import parent as sandbox
from worker.sandbox.parent import ModelRef

log = logging.getLogger(__name__)

#: Errors whose message is already written for a person.
USER_ERRORS = (ModelLoadError, ImageError, ValueError, MemoryError)


def blobs() -> LocalBlobStore:
    return LocalBlobStore(get_settings().blobs)


def device() -> torch.device:
    setting = get_settings().device
    return torch.device(setting) if setting else default_device()


def describe(error: BaseException) -> str:
    """A message a person understands; internal errors keep their type for the logs."""
    if isinstance(error, USER_ERRORS):
        return str(error)
    if type(error).__name__ == "SoftTimeLimitExceeded":
        return f"the task took longer than the time limit ({get_settings().task_time_limit_s} s)"
    return f"internal error ({type(error).__name__}: {error}); please retry or report it"


# ---------------------------------------------------------------- models


def model_ref(row: ModelRecord) -> ModelRef:
    """How the sandbox gets and runs ``row``'s model (its bytes are read only when needed)."""
    key = row.blob_key
    return ModelRef(
        blob_key=key,
        read=lambda: blobs().get(key),
        input_shape=tuple(row.input_shape) if row.input_shape else None,
        architecture=row.architecture,
        device=str(device()),
        max_bytes=get_settings().max_model_bytes,
        max_input_values=get_settings().max_input_values,
    )


def validate_model(model_id: str) -> None:
    """Load the model in the sandbox, run a test pass, record format/shape/classes/layers.

    Claims the model's lease first: a duplicate delivery while another worker validates it
    does nothing; a worker killed mid-validation leaves a lease the sweep re-queues."""
    owner = leases.new_owner()
    if not leases.claim(ModelRecord, model_id, owner, status="validating"):
        return
    with leases.Heartbeat(ModelRecord, model_id, owner):
        try:
            with session_scope() as s:
                row = s.get_one(ModelRecord, model_id)
                info = sandbox.current().validate(model_ref(row))
                s.refresh(row)
                if row.lease_owner != owner:  # taken over meanwhile: the new owner records
                    return
                _record_validation(row, info)
                row.status, row.error = "ready", None
                row.lease_owner = row.lease_expires_at = None
        except Exception as error:  # recorded for the user; the task itself succeeds
            log.info("model %s failed validation: %s", model_id, error)
            _release(ModelRecord, model_id, owner, status="failed", error=describe(error))


def _record_validation(row: ModelRecord, info: dict[str, Any]) -> None:
    row.format = info["format"]
    row.input_shape = list(info["input_shape"])
    row.num_classes = int(info["num_classes"])
    row.layers = list(info["layers"])
    row.layer_shapes = dict(info["layer_shapes"])
    row.architecture = info["architecture"]
    row.seconds_per_pass = float(info["seconds_per_pass"])
    if row.labels and len(row.labels) != row.num_classes:
        raise ValueError(
            f"{len(row.labels)} class labels were given but the model has {row.num_classes} classes"
        )


# ---------------------------------------------------------------- analyses


@dataclass(frozen=True)
class ItemInputs:
    """What an item's context reads from the database and the blob store: the same for
    every input of one image of one analysis (the image and its noisy and attacked copies),
    so those share it (:func:`item_inputs`)."""

    params: dict[str, Any]
    n_players: int
    model: ModelRef
    clean: np.ndarray
    """The image as the model sees it."""
    baseline: np.ndarray | None
    """What absent patches show; None for a learned baseline (learned on first use)."""
    learned_key: str | None
    start: np.ndarray | None
    """Where a learned baseline's optimisation starts."""

    @classmethod
    def read(cls, s: Session, item: AnalysisItem) -> ItemInputs:
        analysis = item.analysis
        params = analysis.params
        model_row = s.get_one(
            ModelRecord, (item.variant or {}).get("model_id") or analysis.model_id
        )
        image_row = s.get_one(ImageRecord, item.image_id)
        if not model_row.input_shape:
            raise ValueError("the model has not been validated yet")
        c, h, w = model_row.input_shape

        def as_model_sees(blob_key: str) -> torch.Tensor:
            return load_image(
                blobs().get(blob_key), channels=c, size=(h, w),
                mean=model_row.mean, std=model_row.std,
            )  # fmt: skip

        x = as_model_sees(image_row.blob_key)
        baseline = learned = start = None
        if params["baseline"] == "learned":  # learned on first use, outside any session
            learned = learned_key(model_row, image_row, params)
            start = make_baseline(x, params["learned_baseline"]["start"]).numpy()
        else:
            baseline_key = params.get("baseline_image_key")
            kind: Any = as_model_sees(baseline_key) if baseline_key else params["baseline"]
            baseline = make_baseline(x, kind).numpy()
        return cls(
            params=params, n_players=analysis.n_players, model=model_ref(model_row),
            clean=x.numpy(), baseline=baseline, learned_key=learned, start=start,
        )  # fmt: skip


#: Inputs kept per worker process (an image's variants are consecutive items).
KEEP_INPUTS = 8
_INPUTS: OrderedDict[tuple[str, str, str | None], ItemInputs] = OrderedDict()
_INPUTS_LOCK = threading.Lock()


def item_inputs(s: Session, item: AnalysisItem) -> ItemInputs:
    """The item's inputs, read once per image, analysis and model in a worker process: a
    stability analysis's noisy and attacked copies of an image reuse the clean one's
    (rows, blob reads, image decode and baseline were about 16 ms of each copy). They never
    change: model and image bytes are content-addressed, an analysis's parameters fixed."""
    key = (item.analysis_id, item.image_id, (item.variant or {}).get("model_id"))
    with _INPUTS_LOCK:
        if key in _INPUTS:
            _INPUTS.move_to_end(key)
            return _INPUTS[key]
    inputs = ItemInputs.read(s, item)
    with _INPUTS_LOCK:
        _INPUTS[key] = inputs
        while len(_INPUTS) > KEEP_INPUTS:
            _INPUTS.popitem(last=False)
    return inputs


class ItemContext:
    """What the sandbox needs to run forward passes for one item (built in the worker: the
    image as the model sees it, the baseline, the players; no model code runs here)."""

    def __init__(self, s: Session, item: AnalysisItem) -> None:
        inputs = item_inputs(s, item)
        self.params = params = inputs.params
        self.n_players = inputs.n_players
        self.model = inputs.model
        self.clean = inputs.clean
        self.variant = item.variant
        self._x: np.ndarray | None = None if is_perturbed(item) else self.clean
        self._baseline: np.ndarray | None = inputs.baseline
        self.learned_key = inputs.learned_key
        self.start = inputs.start
        self.sampled = params.get("mode") == "sampled"
        self.plan = plan_of(params) if self.sampled else None
        self._target: int | None = None
        self._lock = threading.RLock()  # target() reads the baseline while holding it

    def prepare(self) -> None:
        """Draw a noisy input now, in any thread (an attacked one needs this thread's
        sandbox, and a learned baseline too: those wait until the item runs)."""
        if (self.variant or {}).get("kind") == "noise":
            self.x  # noqa: B018  (computed and kept)

    @property
    def x(self) -> np.ndarray:
        """The input analysed: the image as the model sees it, or (stability) with its
        Gaussian noise, or under its PGD attack (computed in the sandbox on first use). The
        baseline is always the clean image's."""
        with self._lock:
            if self._x is None:
                self._x = perturbed(self)
            return self._x

    @property
    def baseline(self) -> np.ndarray:
        """What absent patches show: the chosen baseline, or the learned one (looked up in
        the cache, else learned in the sandbox once and stored)."""
        with self._lock:
            if self._baseline is None:
                assert self.learned_key is not None
                self._baseline = learned_baseline(self)
            return self._baseline

    def logits(self, start: int, stop: int, progress: ProgressFn) -> tuple[np.ndarray, float]:
        """Rows ``start … stop−1`` of the item's logit table, run in this thread's sandbox;
        the finish of this thread's previous image starts once the request is out."""
        table, seconds = sandbox.current().logits(
            self.model, self.x, self.baseline,
            grid=(self.params["grid_rows"], self.params["grid_cols"]),
            players=self.params.get("players"), others_present=self.params["others_present"],
            start=start, stop=stop, batch_size=get_settings().batch_size, progress=progress,
            sent=overlap.release,
        )  # fmt: skip
        check_finite(table, start)
        return table, seconds

    def chunk(self, start: int, stop: int, progress: ProgressFn) -> tuple[bytes, int, float]:
        """One chunk's stored bytes, the forward passes it took and their seconds: logit rows
        ``start … stop−1`` (npy), or the statistics of sampled units ``start … stop−1`` (npz)."""
        if self.plan is None:
            table, seconds = self.logits(start, stop, progress)
            return _npy_bytes(table), stop - start, seconds
        spent = [0.0, 0]

        def evaluate(packed: np.ndarray, report: ProgressFn | None) -> np.ndarray:
            logits, seconds = self.coalition_logits(packed, report)
            spent[0] += seconds
            spent[1] += len(packed)
            return output_values(logits, self.target(), self.params["output"])

        stats = run_units(self.plan, start, stop, evaluate, progress)
        return _npz_bytes(to_arrays(stats)), int(spent[1]), spent[0]

    def coalition_logits(
        self, packed: np.ndarray, progress: ProgressFn | None
    ) -> tuple[np.ndarray, float]:
        logits, seconds = sandbox.current().coalition_logits(
            self.model, self.x, self.baseline, packed,
            grid=(self.params["grid_rows"], self.params["grid_cols"]),
            players=self.params.get("players"), others_present=self.params["others_present"],
            batch_size=get_settings().batch_size, progress=progress,
        )  # fmt: skip
        check_finite(logits)
        return logits, seconds

    def target(self) -> int:
        """The class whose output is analysed: as requested, or the one the model predicts on
        the whole image (one forward pass, once per worker process)."""
        requested = self.params.get("target", "predicted")
        if isinstance(requested, int):
            return requested
        with self._lock:
            if self._target is None:
                whole = np.packbits(np.ones((1, self.n_players), dtype=bool), axis=1)
                logits, _ = self.coalition_logits(whole, None)
                self._target = predicted_class(logits[0])
            return self._target


def is_perturbed(item: AnalysisItem) -> bool:
    """Whether the item is a stability analysis's noisy or attacked copy of its image."""
    return (item.variant or {}).get("kind") in ("noise", "pgd")


def perturbed(ctx: ItemContext) -> np.ndarray:
    """The clean input with the item's perturbation (SCIENCE.md §6)."""
    variant, spec = ctx.variant or {}, ctx.params["stability"]
    if variant.get("kind") == "noise":
        noise = gaussian_noise(
            ctx.clean.shape, float(spec["sigma"]), int(spec["draws"]), int(spec["seed"])
        )
        return (ctx.clean + noise[int(variant["draw"])]).astype(np.float32)
    if variant.get("kind") == "pgd":
        delta = sandbox.current().pgd(
            ctx.model, ctx.clean, epsilon=float(spec["epsilon"]), steps=int(spec["pgd_steps"]),
            seed=int(spec["seed"]),
        )  # fmt: skip
        return (ctx.clean + delta).astype(np.float32)
    raise ValueError(f"unknown input variant {variant}")


def learned_baseline(ctx: ItemContext) -> np.ndarray:
    """The learned baseline of ``ctx``'s image: from the cache, or learned and stored."""
    key = ctx.learned_key
    assert key is not None
    with session_scope() as s:
        row = s.get(LearnedBaseline, key)
        blob = None if row is None else row.blob_key
    if blob is not None:
        return np.load(io.BytesIO(blobs().get(blob)))
    spec, params = ctx.params["learned_baseline"], ctx.params
    target = params.get("target", "predicted")
    assert ctx.start is not None  # a learned baseline's inputs have its start
    baseline, info = sandbox.current().learn_baseline(
        ctx.model, ctx.clean, ctx.start,
        grid=(params["grid_rows"], params["grid_cols"]), players=params.get("players"),
        others_present=params["others_present"],
        target=target if isinstance(target, int) else None, output=params["output"],
        radius=float(spec["radius"]), steps=int(spec["steps"]),
        batch_size=get_settings().batch_size,
    )  # fmt: skip
    row = LearnedBaseline(
        cache_key=key, blob_key=blobs().put(_npy_bytes(baseline)), target=int(info["target"]),
        loss_before=float(info["loss_before"]), loss_after=float(info["loss_after"]),
        history=[float(h) for h in info["history"]],
    )  # fmt: skip
    _store_once(row, key)
    return baseline


#: Item contexts kept per worker process: the chunks of one image reuse theirs.
KEEP_CONTEXTS = 8
_CONTEXTS: OrderedDict[str, ItemContext] = OrderedDict()
_CONTEXTS_LOCK = threading.Lock()
_BUILDING: dict[str, threading.Lock] = {}


def item_context(item_id: str) -> ItemContext:
    """The item's context, built once per worker process (rows, blob reads, image decode and
    baseline would otherwise be repeated by every chunk). Its inputs never change: the model
    and image bytes are content-addressed and an analysis's parameters are fixed."""
    with _CONTEXTS_LOCK:
        if item_id in _CONTEXTS:
            _CONTEXTS.move_to_end(item_id)
            return _CONTEXTS[item_id]
        building = _BUILDING.setdefault(item_id, threading.Lock())
    # one build per item (chunks of it on several threads wait for it), none blocking others
    with building:
        with _CONTEXTS_LOCK:
            if item_id in _CONTEXTS:
                return _CONTEXTS[item_id]
        with session_scope() as s:
            ctx = ItemContext(s, _one_item(s, item_id))
        with _CONTEXTS_LOCK:
            _CONTEXTS[item_id] = ctx
            _BUILDING.pop(item_id, None)
            while len(_CONTEXTS) > KEEP_CONTEXTS:
                _CONTEXTS.popitem(last=False)
            return ctx


def check_finite(table: np.ndarray, start: int = 0) -> None:
    """Refuse a logit table with NaN or infinite values, saying on how many masked inputs."""
    bad = ~np.isfinite(table).all(axis=1)
    count = int(bad.sum())
    if count:
        first = start + int(np.argmax(bad))
        raise ValueError(
            f"the model gave NaN or infinite logits on {count:,} of {len(table):,} masked "
            f"inputs (the first is the mask with bits {first:#x}); results would be undefined"
        )


def reporter(
    write: Callable[[Session, int], None],
    cancelled: Callable[[Session], bool],
    *,
    final: bool = True,
) -> Callable[[int, int], None]:
    """A progress callback that writes at most every ``progress_interval_s`` and checks for
    cancellation at the same time (between batches or epochs); the last report (done =
    total) is always written, unless ``final`` is false: the caller's next write says the
    work is done, and the last report would only delay it."""
    interval = get_settings().progress_interval_s
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total and not final:
            return
        if now - last[0] < interval and done < total:
            return
        last[0] = now
        with session_scope() as s:
            write(s, done)
            stop = cancelled(s)
        if stop:
            raise Cancelled

    return report


def leased_reporter(
    table: Any,
    row_id: str,
    owner: str,
    column: str,
    also_stop: Callable[[Session], bool] | None = None,
    *,
    final: bool = True,
) -> Callable[[int, int], None]:
    """A :func:`reporter` (``final`` as there) for a leased row: progress is written to
    ``column`` only while ``owner`` holds the lease, and the work stops (``Cancelled``) once
    it does not — after a cancel (which ends the lease), or when a retry or the sweep handed
    the job to another worker — or when ``also_stop`` says so."""

    def write(s: Session, done: int) -> None:
        s.execute(
            update(table)
            .where(table.id == row_id, table.lease_owner == owner)
            .values({column: done})
        )

    def stop(s: Session) -> bool:
        holder = s.scalar(select(table.lease_owner).where(table.id == row_id))
        return holder != owner or (also_stop is not None and also_stop(s))

    return reporter(write, stop, final=final)


def _analysis_cancelled(analysis_id: str) -> Callable[[Session], bool]:
    """Whether to stop: the analysis was cancelled, or deleted (its row is gone)."""
    return lambda s: (
        s.scalar(select(Analysis.cancel_requested).where(Analysis.id == analysis_id))
        in (True, None)
    )


#: How the worker loads an item: with its analysis's own row in the same query, and
#: without its chunk list (loaded on access, where needed). ``AnalysisItem.chunks`` loads
#: by selectin for the API's pages: one more query for every get of an item.
_ONE_ITEM = (
    joinedload(AnalysisItem.analysis).lazyload(Analysis.items),
    lazyload(AnalysisItem.chunks),
)


def _one_item(s: Session, item_id: str) -> AnalysisItem:
    return s.get_one(AnalysisItem, item_id, options=_ONE_ITEM)


def start_analysis(analysis_id: str) -> list[str]:
    """Mark the analysis running; return the ids of the items to run (one task each)."""
    with session_scope() as s:
        analysis = s.get(Analysis, analysis_id, options=[ITEMS_WITHOUT_CHUNKS])
        if analysis is None or analysis.cancel_requested:
            return []
        analysis.status = "running"
        analysis.started_at = analysis.started_at or utcnow()
        return [item.id for item in analysis.items if item.status in ("queued", "running")]


@dataclass
class Claimed:
    """An item claimed and looked at by :func:`claim_item`; :func:`run_claimed` goes on."""

    item_id: str
    owner: str
    analysis_id: str
    step: str
    """``whole`` (forward passes here), ``cached`` (the table is stored), ``cancelled``,
    ``chunks`` (chunk tasks ``ids`` to send) or ``assemble`` (every chunk is done)."""
    ids: list[str]
    heartbeat: leases.Heartbeat | None = None
    """Renewing the lease (``whole`` and ``cached``) from the claim until the item ends."""


def claim_item(item_id: str) -> Claimed | None:
    """Claim one image and decide how it runs: from the cache, in this task, or as chunk
    tasks (one transaction); for a run in this task, its context is then built and a noisy
    input drawn, so that a task can do this for its next image while this one's passes
    run. None: someone else holds it, or it has ended."""
    owner = leases.new_owner()
    with session_scope() as s:
        if not leases.claim_in(
            s, AnalysisItem, item_id, owner, AnalysisItem.status.in_(("queued", "running")),
            status="running", started_at=utcnow(),
        ):  # fmt: skip
            return None
        item = _one_item(s, item_id)
        analysis = item.analysis
        if analysis.cancel_requested:
            item.status = "cancelled"
            item.lease_owner = item.lease_expires_at = None
            return Claimed(item_id, owner, item.analysis_id, "cancelled", [])
        if analysis.status == "queued":  # started by a sweep or a retry, not start_analysis
            analysis.status = "running"
            analysis.started_at = analysis.started_at or utcnow()
        cached = s.get(LogitTable, item.cache_key)
        total = 1 << analysis.n_players
        item.progress_total = total
        if analysis.params.get("mode") == "sampled":
            item.progress_total = total = int(analysis.params["expected_passes"])
            if cached is None:
                plan = plan_of(analysis.params)
                step, ids = _make_chunks(s, item, plan.chunks(get_settings().sampled_chunk_passes))
                return Claimed(item_id, owner, item.analysis_id, step, ids)
        elif cached is None and total > get_settings().chunk_size and not _whole(s, item, total):
            size = get_settings().chunk_size
            ranges = [(a, min(a + size, total)) for a in range(0, total, size)]
            step, ids = _make_chunks(s, item, ranges)
            return Claimed(item_id, owner, item.analysis_id, step, ids)
        step = "whole" if cached is None else "cached"
        claimed = Claimed(item_id, owner, item.analysis_id, step, [])
    claimed.heartbeat = leases.Heartbeat(AnalysisItem, item_id, owner).__enter__()
    if step == "whole":
        prepare(item_id)
    return claimed


def _whole(s: Session, item: AnalysisItem, masks: int) -> bool:
    """Whether an image with more masks than a chunk still runs in one task: while other
    images of its analysis are queued they keep the other workers busy, and one task runs
    the image with the next one prepared and its finish beside the next one's passes; as
    chunks each 16,384 masks cost about 30 ms of database writes and a task hand-off, and
    its assembly 65 ms, while the sandbox waits (issue 11: 9 % of an n = 16 stability
    analysis). An analysis's last queued image, and larger ones, are split, so the workers
    share it."""
    if masks > get_settings().whole_image_max_masks:
        return False
    other = s.scalar(_queued(item.analysis_id).where(AnalysisItem.id != item.id).limit(1))
    return other is not None


def prepare(item_id: str) -> None:
    """Build the item's context now (its own session; kept per process) and draw its noisy
    input. A failure is left for the run to report: it builds the context again."""
    try:
        item_context(item_id).prepare()
    except Exception:
        log.debug("preparing item %s failed; its run will say why", item_id, exc_info=True)


def unclaim(claimed: Claimed | str | None) -> None:
    """Give back an item claimed but not run (its task ended first): queued again, so that
    another task takes it (else the sweep sends it again after a grace period). An item
    :func:`look_ahead` only prepared (its id) or none holds nothing to give back."""
    if not isinstance(claimed, Claimed):
        return
    if claimed.heartbeat is not None:
        claimed.heartbeat.__exit__()
    if claimed.step == "cancelled":
        roll_up(claimed.analysis_id)
        return
    held = (  # chunked: the item's own lease ended when its chunks were made
        AnalysisItem.lease_owner.is_(None)
        if claimed.step in ("chunks", "assemble")
        else AnalysisItem.lease_owner == claimed.owner
    )
    later = leases.until(10 * get_settings().lease_s)
    with session_scope() as s:
        s.execute(
            update(AnalysisItem)
            .where(AnalysisItem.id == claimed.item_id, AnalysisItem.status == "running", held)
            .values(status="queued", lease_owner=None, lease_expires_at=later)
        )


def _queued(analysis_id: str) -> Any:
    return select(AnalysisItem.id).where(
        AnalysisItem.analysis_id == analysis_id,
        AnalysisItem.status == "queued",
        leases.free(AnalysisItem),
    )


def claim_next(analysis_id: str) -> Claimed | None:
    """Claim the analysis's first queued image that nobody holds (by position), or None when
    there is none. :func:`worker.tasks.run_items` runs the analysis's images this way, one
    after another in one task: an image costs no task hand-off of its own (about 24 ms on a
    prefork worker, a tenth of an n = 12 image's passes), while the analysis's other tasks
    pull from the same list, so the images spread over the workers however many there are."""
    for _ in range(100):  # another task may claim the one found first: look again
        with session_scope() as s:
            item_id = s.scalar(_queued(analysis_id).order_by(AnalysisItem.position).limit(1))
        if item_id is None:
            return None
        claimed = claim_item(item_id)
        if claimed is not None:
            return claimed
    return None


def look_ahead(analysis_id: str) -> Claimed | str | None:
    """A task's next image, found while its current one runs. Claimed (and prepared) when
    more images are queued than are running, so that every other task of the analysis still
    finds one; else only prepared, its id returned, to be claimed when the current image
    ends by whichever task gets there first (a small analysis is not held by one worker
    while another idles). None: nothing is queued."""
    with session_scope() as s:
        queued = list(s.scalars(_queued(analysis_id).order_by(AnalysisItem.position).limit(64)))
        running = s.scalar(
            select(func.count())
            .select_from(AnalysisItem)
            .where(AnalysisItem.analysis_id == analysis_id, AnalysisItem.status == "running")
        )
    if not queued:
        return None
    if len(queued) > int(running or 0):
        return claim_item(queued[0]) or claim_next(analysis_id)
    prepare(queued[0])
    return queued[0]


def run_claimed(claimed: Claimed, *, start_finish_when_sent: bool = False) -> Next:
    """Go on with an item :func:`claim_item` claimed. Returns ``("chunks", ids)`` to send,
    ``("assemble", [item_id])`` when every chunk is done already (a retry after an
    interrupted assembly), or ``("", [])``. ``start_finish_when_sent``: the item's finish
    waits for this thread's next request to the sandbox, or its
    :func:`worker.overlap.release`, which the caller then makes sure comes."""
    item_id, owner = claimed.item_id, claimed.owner
    if claimed.step == "cancelled":
        roll_up(claimed.analysis_id)
        return "", []
    if claimed.step in ("chunks", "assemble"):
        return claimed.step, claimed.ids
    heartbeat = claimed.heartbeat
    assert heartbeat is not None
    computed = None
    if claimed.step == "whole":
        try:
            computed = _forward_whole(item_id, owner)
        except Exception as error:
            heartbeat.__exit__()
            _fail_item(item_id, error, owner)
            return "", []
        if not start_finish_when_sent or overlap.finishing():
            # the finish, which says so, may wait (for the previous one): say it now. A
            # finish that starts with the next request says it itself, without a write
            # that would run while this thread is getting that request out
            _passes_done(item_id, owner)
    overlap.hand_over(
        _finish_whole, item_id, owner, computed, heartbeat, start_when_sent=start_finish_when_sent
    )
    return "", []


#: What :func:`run_item` leaves to do: chunk tasks to send, or the assembly of the item.
Next = tuple[str, list[str]]


def run_item(item_id: str) -> Next:
    """Run one image: from the cache, in this task, or as chunk tasks (:func:`run_claimed`)."""
    claimed = claim_item(item_id)
    return ("", []) if claimed is None else run_claimed(claimed)


def _make_chunks(s: Session, item: AnalysisItem, ranges: list[tuple[int, int]]) -> Next:
    """Chunk rows (once: masks or sampled units ``[start, stop)``) and the ids still to run;
    the item's own lease ends here (each chunk holds one), unless every chunk is done and
    the item goes straight to assembly."""
    if not item.chunks:
        for start, stop in ranges:
            item.chunks.append(Chunk(start=start, stop=stop))
        item.chunks_total = len(item.chunks)
        item.chunks_done = 0
    for chunk in item.chunks:
        if chunk.status not in ("done", "running"):
            chunk.status = "queued"
    item.chunks_done = sum(c.status == "done" for c in item.chunks)
    item.lease_owner = item.lease_expires_at = None
    s.flush()
    if item.chunks_done == item.chunks_total:
        return "assemble", [item.id]
    return "chunks", [c.id for c in item.chunks if c.status != "done"]


def _forward_whole(item_id: str, owner: str) -> tuple[np.ndarray, float]:
    """The item's whole logit table, in one sandbox call, and the seconds it took."""
    ctx = item_context(item_id)
    # the last report: the finish's (_store_result), or _passes_done's (run_claimed)
    progress = leased_reporter(AnalysisItem, item_id, owner, "progress_done", final=False)
    return ctx.logits(0, 1 << ctx.n_players, progress)


def _finish_whole(
    item_id: str,
    owner: str,
    computed: tuple[np.ndarray, float] | None,
    heartbeat: leases.Heartbeat,
) -> None:
    """Store the table ``computed`` (None: it was cached) and finish the item, then stop
    renewing its lease (:func:`worker.overlap.hand_over` runs this beside the next item)."""
    try:
        stored = None
        if computed is not None:
            try:
                stored = _store_table(item_id, *computed)
            except Exception as error:
                _fail_item(item_id, error, owner)
                return
        finish_item(item_id, owner, cached=computed is None, stored=stored)
    finally:
        heartbeat.__exit__()


_WRITER: tuple[int, ThreadPoolExecutor] | None = None


def _passes_done(item_id: str, owner: str) -> None:
    """Say that every pass of the item is done (the page shows "finishing"), in a thread of
    this process: the passes' last progress report, written in line, kept the sandbox
    waiting on a database round trip before its next item. Harmless if it lands after the
    item's end: it writes only while ``owner`` holds the lease."""
    global _WRITER
    if _WRITER is None or _WRITER[0] != os.getpid():  # not a thread of a parent before a fork
        _WRITER = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress"))
    _WRITER[1].submit(_write_passes_done, item_id, owner)


def _write_passes_done(item_id: str, owner: str) -> None:
    with session_scope() as s:
        s.execute(
            update(AnalysisItem)
            .where(AnalysisItem.id == item_id, AnalysisItem.lease_owner == owner)
            .values(progress_done=AnalysisItem.progress_total)
        )


def _store_table(item_id: str, table: np.ndarray, seconds: float) -> bytes:
    """Store the item's logit table under its cache key (:func:`_store_result`); the bytes
    stored."""
    data = _npy_bytes(table)
    _store_result(item_id, data, int(table.shape[1]), seconds)
    return data


def _pool_chunks(params: dict[str, Any], chunks: list[bytes]) -> dict[str, np.ndarray]:
    """A sampled item's statistics: its chunks' pooled in chunk order (the same numbers
    whichever workers ran them)."""
    plan = plan_of(params)
    pooled = [[empty_result(plan, k)] for k in range(len(plan.parts))]
    for data in chunks:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for k, result in from_arrays(dict(npz)).items():
                pooled[k].append(result)
    return to_arrays({k: merge(results) for k, results in enumerate(pooled)})


def _store_result(item_id: str, data: bytes, classes: int, seconds: float) -> None:
    """Store the item's logit table (or a sampled item's statistics, ``classes`` 0) under its
    cache key, and say that its passes are done, in one transaction. Two
    items with the same key (the same image twice, or identical requests) may get here at
    once: the first row stays, and the other, identical by construction, is dropped (its
    transaction then only says the passes are done)."""
    key = blobs().put(data)
    try:
        with session_scope() as s:
            item = _one_item(s, item_id)
            item.progress_done = item.progress_total
            if s.get(LogitTable, item.cache_key) is None:
                s.add(
                    LogitTable(
                        cache_key=item.cache_key, blob_key=key,
                        n_players=item.analysis.n_players, classes=classes,
                        forward_seconds=seconds,
                    )
                )  # fmt: skip
    except IntegrityError:
        log.info("logit table %s was stored by another worker meanwhile", item_id)
        with session_scope() as s:
            item = _one_item(s, item_id)
            item.progress_done = item.progress_total


def _store_once(row: LogitTable | LearnedBaseline, key: str) -> None:
    """Add a cache row unless one with its key exists. Two workers may get here at once with
    the same key (identical by construction): the first row stays, the other is dropped."""
    try:
        with session_scope() as s:
            if s.get(type(row), key) is None:
                s.add(row)
    except IntegrityError:
        log.info("%s %s was stored by another worker meanwhile", type(row).__tablename__, key)


def run_chunk(chunk_id: str) -> str | None:
    """Forward passes for one mask range; the last chunk of an item returns the item id.

    The chunk is claimed through its lease and marked done only by its lease holder, so a
    chunk delivered twice is computed once and counted once."""
    owner = leases.new_owner()
    if not leases.claim(Chunk, chunk_id, owner, Chunk.status.in_(("queued", "running"))):
        return None
    with session_scope() as s:
        chunk = s.get_one(Chunk, chunk_id)
        item = _one_item(s, chunk.item_id)
        item_id, analysis_id = item.id, item.analysis_id
        start, stop = chunk.start, chunk.stop
        stop_now = item.analysis.cancel_requested or item.status != "running"
        chunk.status = "queued" if stop_now else "running"
        if stop_now:
            chunk.lease_owner = chunk.lease_expires_at = None
            return None
    with leases.Heartbeat(Chunk, chunk_id, owner):
        try:
            ctx = item_context(item_id)
            progress = leased_reporter(
                Chunk, chunk_id, owner, "done", also_stop=_analysis_cancelled(analysis_id)
            )
            data, passes, seconds = ctx.chunk(start, stop, progress)
        except Cancelled:  # the cancel itself ended the item
            _release(Chunk, chunk_id, owner, status="queued")
            return None
        except Exception as error:  # fails the item, if this chunk still belonged to it
            if _release(Chunk, chunk_id, owner, status="queued"):
                _fail_item(item_id, error, None)
            return None
        key = blobs().put(data)
    with session_scope() as s:
        marked = s.execute(
            update(Chunk)
            .where(Chunk.id == chunk_id, Chunk.lease_owner == owner)
            .values(
                status="done",
                done=passes,
                blob_key=key,
                seconds=seconds,
                **leases.release_values(),
            )
        ).rowcount  # type: ignore[attr-defined]
        if not marked:  # the lease was lost and someone else ran it
            return None
        done, total = s.execute(
            update(AnalysisItem)
            .where(AnalysisItem.id == item_id)
            .values(
                chunks_done=AnalysisItem.chunks_done + 1,
                # the assembly should start by then, or the sweep sends it again
                lease_expires_at=leases.until(10 * get_settings().lease_s),
            )
            .returning(AnalysisItem.chunks_done, AnalysisItem.chunks_total)
        ).one()
    return item_id if done == total else None


def assemble_item(item_id: str) -> None:
    """Concatenate the chunks' logits in mask order, store the table, then finish.

    Chunk blobs are content-addressed and may be shared with other items or analyses, so
    none is deleted here: ``conceptlens gc`` frees them once no row refers to them."""
    owner = leases.new_owner()
    claimed = leases.claim(
        AnalysisItem, item_id, owner, AnalysisItem.status == "running",
        AnalysisItem.chunks_total > 0, AnalysisItem.chunks_done >= AnalysisItem.chunks_total,
    )  # fmt: skip
    if not claimed:
        return
    with leases.Heartbeat(AnalysisItem, item_id, owner):
        try:
            with session_scope() as s:
                item = _one_item(s, item_id)
                keys = [c.blob_key for c in item.chunks]
                seconds = sum(c.seconds or 0.0 for c in item.chunks)
                params = item.analysis.params
            if not all(keys):
                raise RuntimeError("a chunk marked done has no stored logits")
            store = blobs()
            parts = [store.get(k) for k in keys if k]
            if params.get("mode") == "sampled":
                stored = _npz_bytes(_pool_chunks(params, parts))
                _store_result(item_id, stored, 0, seconds)
            else:
                table = np.concatenate([np.load(io.BytesIO(part)) for part in parts])
                stored = _store_table(item_id, table, seconds)
        except Exception as error:
            _fail_item(item_id, error, owner)
            return
        finish_item(item_id, owner, stored=stored)


def finish_item(
    item_id: str, owner: str | None, *, cached: bool = False, stored: bytes | None = None
) -> None:
    """Transforms from the stored table (no forward pass), results saved, analysis rolled up.
    Written only while ``owner`` holds the item's lease (a cancel or a takeover ends it).
    ``stored``: the table's bytes, when the caller has just stored them (not read again)."""
    try:
        with session_scope() as s:
            item = _one_item(s, item_id)
            if owner is not None and item.lease_owner != owner:
                return
            table_row = s.get_one(LogitTable, item.cache_key)
            if stored is None:
                stored = blobs().get(table_row.blob_key)
            params = item.analysis.params
            if params.get("mode") == "sampled":
                arrays, summary = sampled_outcome(stored)
            else:
                arrays, summary = _exact_outcome(stored, params, reference=not is_perturbed(item))
            if params.get("baseline") == "learned":
                summary["learned_baseline"] = _learned_summary(s, item, params)
            if "passes" in summary:  # sampled: the passes spent, no longer the expected
                item.progress_total = summary["passes"]
            item.result_key = blobs().put(_npz_bytes(arrays))
            item.summary = summary | {
                "forward_seconds": table_row.forward_seconds,
                "cached": cached,
            }
            item.status = "done"
            item.error = None
            item.finished_at = utcnow()
            item.lease_owner = item.lease_expires_at = None
            analysis_id = item.analysis_id
    except Exception as error:
        _fail_item(item_id, error, owner)
        return
    roll_up(analysis_id)


def _learned_summary(s: Session, item: AnalysisItem, params: dict[str, Any]) -> dict[str, Any]:
    model = s.get_one(ModelRecord, item.analysis.model_id)
    image = s.get_one(ImageRecord, item.image_id)
    row = s.get(LearnedBaseline, learned_key(model, image, params))
    if row is None:
        raise RuntimeError("the learned baseline of this image is missing from the cache")
    return {
        **params["learned_baseline"],
        "loss_before": row.loss_before,
        "loss_after": row.loss_after,
        "history": row.history,
    }


def _exact_outcome(
    stored: bytes, params: dict[str, Any], *, reference: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Interactions, curves and sparsity of one image from its logit table (and its AND-OR
    split, when asked for). ``reference``: with the null reference of its ``J^(m)`` (not
    drawn for a stability analysis's noisy and attacked copies: no page shows theirs, and
    its 16 transforms were the largest cost of such an item after its forward passes)."""
    and_or = params.get("and_or") or {}
    result = interactions_from_logits(
        np.load(io.BytesIO(stored)),
        target=params.get("target", "predicted"),
        output=params.get("output", "log-odds"),
        tau=params.get("tau", 0.05),
        k=params.get("top_k", 20),
        and_or_steps=int(and_or.get("steps", 0)),
        and_or_noise=bool(and_or.get("noise", False)),
    )
    arrays = {k: v for k, v in result.arrays().items() if k != "logits"}
    summary = {**result.summary(), "strength": result.strength.tolist()}
    if reference and result.n <= REFERENCE_MAX_PLAYERS:
        ref = permuted_reference(result.v, rng=np.random.default_rng(0), draws=REFERENCE_DRAWS)
        summary["reference"] = {
            "mean": ref.mean.tolist(),
            "lo": ref.lo.tolist(),
            "hi": ref.hi.tolist(),
        }
    return arrays, summary


#: The null reference of J^(m) (the image's values shuffled among subsets): draws, and the
#: largest n it is computed for (16 draws take about 0.04 s at n = 16, 0.6 s at n = 20).
REFERENCE_DRAWS = 16
REFERENCE_MAX_PLAYERS = 20


def sampled_outcome(stored: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A sampled image's pooled statistics (kept as its result, for per-pair values and
    exports) and its summary: ``E_{i,j}|I^(m)(i,j)|`` per order, plain and debiased, with
    standard errors, and the image's own ``J^(m)``."""
    with np.load(io.BytesIO(stored), allow_pickle=False) as npz:
        arrays = dict(npz)
    results = list(from_arrays(arrays).values())
    plain, debiased = image_strength(results), image_strength(results, debias=True)
    curve = sampled_relative_strength(plain.value, plain.se, plain.orders)
    summary = {
        "kind": "sampled",
        "n_players": results[0].n_players,
        "orders": plain.orders.tolist(),
        "strength": plain.value.tolist(),
        "strength_se": plain.se.tolist(),
        "strength_df": _finite_df(plain),
        "strength_debiased": debiased.value.tolist(),
        "strength_debiased_se": debiased.se.tolist(),
        "strength_debiased_df": _finite_df(debiased),
        "J": curve.value.tolist(),
        "J_se": curve.se.tolist(),
        "passes": int(sum(r.passes for r in results)),
        "pairs": [len(r.pairs) for r in results],
    }
    return arrays, summary


def _release(table: Any, row_id: str, owner: str, **values: Any) -> bool:
    """End ``owner``'s lease with ``values``; False if it was not (or no longer) theirs."""
    with session_scope() as s:
        result = s.execute(
            update(table)
            .where(table.id == row_id, table.lease_owner == owner)
            .values(**leases.release_values(), **values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def outcome(error: BaseException, what: str) -> tuple[str, str | None]:
    """How a job ended on ``error``: ``("cancelled", None)``, or ``("failed", message for a
    person)`` with the failure logged."""
    if isinstance(error, Cancelled):
        return "cancelled", None
    log.warning("%s failed: %s", what, error, exc_info=error)
    return "failed", describe(error)


def _fail_item(item_id: str, error: BaseException, owner: str | None) -> None:
    """End the item as failed or cancelled — unless it has ended already, or ``owner``
    (when given) no longer holds its lease."""
    status, message = outcome(error, f"analysis item {item_id}")
    with session_scope() as s:
        item = _one_item(s, item_id)
        if item.status not in ("queued", "running") or (
            owner is not None and item.lease_owner != owner
        ):
            return
        item.status, item.error = status, message
        item.finished_at = utcnow()
        item.lease_owner = item.lease_expires_at = None
        analysis_id = item.analysis_id
    roll_up(analysis_id)


def hold_row(s: Session, analysis_id: str) -> None:
    """Hold the analysis's row until ``s`` commits. A no-op UPDATE does it on both databases:
    Postgres locks the row (``FOR UPDATE`` alone would, but SQLite ignores it), and SQLite
    takes its one write lock, so nothing reads a summary that another session is about to
    replace."""
    s.execute(update(Analysis).where(Analysis.id == analysis_id).values(status=Analysis.status))


#: While an analysis has images left, its summary over the images finished so far is
#: recomputed at most this often per worker process (the dashboard polls every 0.5 s). Each
#: roll-up reads every item's summary, so rolling up after every image cost O(images²): at
#: 64 items of n = 12 it grew from 6 to 20 ms per image, a third of each image's finish.
#: The last roll-up (nothing queued or running) always runs.
ROLL_UP_INTERVAL_S = 0.5
_ROLLED_UP: OrderedDict[str, float] = OrderedDict()
_ROLLED_UP_LOCK = threading.Lock()


def _rolled_up_lately(analysis_id: str, *, mark: bool = True) -> bool:
    """Whether this process rolled the analysis up within :data:`ROLL_UP_INTERVAL_S`; if
    not (and ``mark``), note that it does so now."""
    now = time.monotonic()
    with _ROLLED_UP_LOCK:
        last = _ROLLED_UP.get(analysis_id)
        if last is not None and now - last < ROLL_UP_INTERVAL_S:
            return True
        if not mark:
            return False
        _ROLLED_UP[analysis_id] = now
        _ROLLED_UP.move_to_end(analysis_id)
        while len(_ROLLED_UP) > 1024:
            _ROLLED_UP.popitem(last=False)
        return False


def roll_up(analysis_id: str) -> None:
    """After an item ends: J^(m) over the images finished so far (so a page can show them
    while others run, or after a failure or cancel; at most every
    :data:`ROLL_UP_INTERVAL_S` while images are left), and, once every item has ended, the
    analysis's status. Two items ending at once roll up one after the other: each reads the
    items only once it holds the analysis's row, so the later one's summary, which counts
    both, is the one that stays."""
    left_items = (
        select(func.count())
        .select_from(AnalysisItem)
        .where(
            AnalysisItem.analysis_id == analysis_id,
            AnalysisItem.status.in_(("queued", "running")),
        )
    )
    with session_scope() as s:
        # Skipped while images are left and one ran lately, before any write: a skipped
        # roll-up no longer locks the row (an UPDATE and a commit to disk per image). This
        # image is stored already, so of two images ending at once at least one counts
        # none left, and that one rolls up in full.
        if s.scalar(left_items) and _rolled_up_lately(analysis_id, mark=False):
            return
        hold_row(s, analysis_id)
        left = s.scalar(left_items)
        if left and _rolled_up_lately(analysis_id):
            return
        analysis = s.get_one(Analysis, analysis_id, options=[ITEMS_WITHOUT_CHUNKS])
        statuses = {item.status for item in analysis.items}
        finished = [item for item in analysis.items if item.status == "done" and item.summary]
        done = [item for item in finished if item.variant is None]  # the images as they are
        image_ids = {item.image_id for item in finished}
        rows = s.execute(  # one query, not one per image
            select(ImageRecord.id, ImageRecord.label).where(ImageRecord.id.in_(image_ids))
        )
        label_of: dict[str, str | None] = {image_id: label for image_id, label in rows}
        if done:
            labels = [label_of[item.image_id] for item in done]
            summarise = _sampled_set if analysis.params.get("mode") == "sampled" else _exact_set
            analysis.summary = summarise(analysis, done)
            groups: dict[str, list[AnalysisItem]] = {}
            for item, label in zip(done, labels, strict=True):
                if label is not None:
                    groups.setdefault(label, []).append(item)
            by_label = {label: summarise(analysis, groups[label]) for label in sorted(groups)}
            if len(by_label) > 1:
                analysis.summary["by_label"] = by_label
        if statuses & {"queued", "running"}:
            return
        if analysis.params.get("mode") == "dynamics" and analysis.summary is not None:
            analysis.summary = {**analysis.summary, **dynamics_set(analysis, finished)}
        if analysis.params.get("mode") == "stability" and analysis.summary is not None:
            analysis.summary = {**analysis.summary, **stability_set(finished, label_of)}
        if "failed" in statuses:
            analysis.status = "failed"
            analysis.error = next(i.error for i in analysis.items if i.status == "failed")
        elif "cancelled" in statuses or analysis.cancel_requested:
            analysis.status = "cancelled"
        else:
            analysis.status = "done"
        analysis.finished_at = utcnow()


def _exact_set(analysis: Analysis, done: list[AnalysisItem]) -> dict[str, Any]:
    """``J^(m)`` over the finished images of an exact analysis, with ``F^(m)``."""
    summaries = [item.summary or {} for item in done]
    out = {
        "J": relative_strength(np.array([x["strength"] for x in summaries])).tolist(),
        "F": summaries[0].get("F", []),
        "images": len(done),
    }
    refs = [x["reference"] for x in summaries if "reference" in x]
    if len(refs) == len(summaries):  # the images' bands, averaged order by order
        out["reference"] = {k: np.mean([r[k] for r in refs], axis=0).tolist() for k in refs[0]}
    return out


#: Degrees of freedom stored for a normal (delta-method) interval: JSON has no infinity.
NORMAL_DF = 1e9


def _finite_df(strength: OrderStrength) -> list[float]:
    df = np.broadcast_to(np.asarray(strength.df, dtype=np.float64), strength.value.shape)
    return np.minimum(df, NORMAL_DF).tolist()


def _sampled_set(analysis: Analysis, done: list[AnalysisItem]) -> dict[str, Any]:
    """``J^(m)`` over the finished images of a sampled analysis with standard errors (the
    delta method over the images' jackknife errors; plain and debiased strength), and
    ``F^(m)`` at the sampled orders."""
    summaries = [item.summary or {} for item in done]
    orders = summaries[0]["orders"]
    out: dict[str, Any] = {"kind": "sampled", "orders": orders, "images": len(done)}
    for suffix in ("", "_debiased"):
        dfs = [x.get("strength" + suffix + "_df") for x in summaries]
        curve = sampled_relative_strength(
            np.array([x["strength" + suffix] for x in summaries]),
            np.array([x["strength" + suffix + "_se"] for x in summaries]),
            orders,
            df=np.array(dfs, dtype=float) if all(d is not None for d in dfs) else math.inf,
        )
        out["J" + suffix], out["J" + suffix + "_se"] = curve.value.tolist(), curve.se.tolist()
        out["J" + suffix + "_half"] = (curve.interval(0.95)[1] - curve.value).tolist()
    f = theory_curve(analysis.n_players)[orders]
    out["F"] = (f / f.mean()).tolist()
    iid = gaussian_expected_strength(analysis.n_players)[orders]
    iid = (iid / iid.mean()).tolist()  # the U that averaging over contexts makes by itself
    out["reference"] = {"mean": iid, "lo": iid, "hi": iid, "name": "i.i.d. random game"}
    return out


def stability_set(finished: list[AnalysisItem], labels: dict[str, str | None]) -> dict[str, Any]:
    """Consistency β, Gaussian instability κ and adversarial sensitivity α per order over
    the images whose every input finished (SCIENCE.md §6), from their stored interactions.
    β uses the images' labels as classes (all one class when unlabelled)."""
    inputs: dict[str, dict[str, np.ndarray]] = {}
    for item in finished:
        assert item.result_key is not None
        with np.load(io.BytesIO(blobs().get(item.result_key)), allow_pickle=False) as npz:
            table = np.asarray(npz["interactions"], dtype=np.float64)
        variant = item.variant or {}
        name = (
            "clean"
            if not variant
            else f"noise{variant['draw']}"
            if variant["kind"] == "noise"
            else "pgd"
        )
        inputs.setdefault(item.image_id, {})[name] = table
    wanted = set().union(*(set(v) for v in inputs.values())) if inputs else set()
    images = sorted(k for k, v in inputs.items() if set(v) == wanted and "clean" in v)
    if not images:
        return {}
    noise = sorted((k for k in wanted if k.startswith("noise")), key=lambda k: int(k[5:]))
    clean = np.stack([inputs[i]["clean"] for i in images])
    n = clean.shape[1].bit_length() - 1
    names = sorted({labels.get(i) or "" for i in images})
    classes = [names.index(labels.get(i) or "") for i in images]
    beta, per_class = consistency(clean, classes)
    out: dict[str, Any] = {
        "images": len(images),
        "beta": _order_stat(per_order(beta, n)),
        "beta_by_class": {
            names[c]: _order_stat(per_order(b, n))["mean"] for c, b in sorted(per_class.items())
        },
    }
    if noise:
        noisy = np.stack([np.stack([inputs[i][k] for k in noise]) for i in images])
        out["kappa"] = _order_stat(per_order(instability(clean, noisy), n))
    if "pgd" in wanted:
        attacked = np.stack([inputs[i]["pgd"] for i in images])
        out["alpha"] = _order_stat(per_order(instability(clean, attacked[:, None]), n))
    return {"stability": out}


def dynamics_set(analysis: Analysis, finished: list[AnalysisItem]) -> dict[str, Any]:
    """Learning dynamics (SCIENCE.md §6) over the images every checkpoint finished: per
    checkpoint, the similarity of its interactions to the final model's per order and
    overall, and its strength distribution over the orders."""
    final_step = analysis.params["steps"][-1]
    tables: dict[int, dict[str, np.ndarray]] = {}
    for item in finished:
        assert item.result_key is not None
        step = (item.variant or {}).get("step", final_step)
        with np.load(io.BytesIO(blobs().get(item.result_key)), allow_pickle=False) as npz:
            tables.setdefault(int(step), {})[item.image_id] = np.asarray(npz["interactions"])
    steps = [int(t) for t in analysis.params["steps"] if int(t) in tables]
    if final_step not in tables or len(steps) < 2:
        return {}
    images = sorted(set.intersection(*(set(tables[t]) for t in steps)))
    if not images:
        return {}
    stack = np.stack([np.stack([tables[t][i] for i in images]) for t in steps])
    per_order, overall = similarity_per_order(stack, stack[-1])

    def plain(values: np.ndarray) -> list[Any]:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(values).ravel()]

    return {
        "dynamics": {
            "steps": steps,
            "images": len(images),
            "similarity": [plain(row) for row in per_order],
            "overall": plain(overall),
            "strength": [plain(row) for row in strength_distribution(stack)],
        }
    }


def _order_stat(stat: OrderStat) -> dict[str, Any]:
    """An :class:`OrderStat` for JSON: NaN (undefined) as null."""

    def plain(values: np.ndarray) -> list[Any]:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]

    return {
        "orders": np.asarray(stat.orders).tolist(),
        "mean": plain(stat.mean),
        "sd": plain(stat.sd),
        "defined": np.asarray(stat.defined).tolist(),
    }


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs read ** as allow_pickle
    return buf.getvalue()
