"""The database tables. The database is the source of truth for job state.

Resources belong to a workspace; rows with ``workspace_id IS NULL`` are built-in (the demo
model and sample digits) and visible to every workspace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.db.base import Base, TimestampMixin, new_id, utcnow


class LeaseMixin:
    """A job row's lease (migration 0008): the worker holding it renews ``lease_expires_at``;
    without an owner, that is the time by which a queued task should have started. A sweep
    re-queues (``attempts`` + 1) or fails a row whose lease has expired."""

    lease_owner: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RunLabelsMixin:
    """What a person calls a run (migration 0016): a name, a note and tags, all optional.
    ``tags`` is a JSON list of short strings; lists filter on them."""

    name: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str] | None] = mapped_column(JSON)


class Workspace(TimestampMixin, Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)


class ModelRecord(LeaseMixin, TimestampMixin, Base):
    """An uploaded (or built-in) model file and what validation found out about it."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    blob_key: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(32))
    input_shape: Mapped[list[int] | None] = mapped_column(JSON)
    num_classes: Mapped[int | None] = mapped_column(Integer)
    layers: Mapped[list[str] | None] = mapped_column(JSON)
    layer_shapes: Mapped[dict[str, list[int]] | None] = mapped_column(JSON)
    """Per-sample output shape of each layer, where known (for choosing one)."""
    labels: Mapped[list[str] | None] = mapped_column(JSON)
    mean: Mapped[list[float] | None] = mapped_column(JSON)
    std: Mapped[list[float] | None] = mapped_column(JSON)
    architecture: Mapped[str | None] = mapped_column(String(64))
    seconds_per_pass: Mapped[float | None] = mapped_column(Float)
    """Measured at validation on the worker's device: for the cost estimate of an analysis."""
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    series: Mapped[str | None] = mapped_column(String(200), index=True)
    """A model series (checkpoints of one training run, migration 0013): its name…"""
    series_step: Mapped[int | None] = mapped_column(Integer)
    """…and this checkpoint's training step (or epoch)."""
    train_samples: Mapped[int | None] = mapped_column(Integer)
    """The model was trained on the first this many images of the built-in digits' training
    split (migration 0014; the built-ins record it): component analyses measure over-fitting
    on exactly those."""
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ImageRecord(TimestampMixin, Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    blob_key: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(8))
    label: Mapped[str | None] = mapped_column(String(64))
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    dataset_id: Mapped[str | None] = mapped_column(String(32), index=True)
    """The image set this image was taken from for an analysis (migration 0010); such images
    are not listed among the workspace's images. No foreign key: deleting the set keeps
    the analyses that used its images."""


class DatasetRecord(TimestampMixin, Base):
    """A labelled (class-per-folder zip) or unlabelled (flat zip) image set, or the built-in
    demo digits (``kind = "digits"``, no blob: the worker loads scikit-learn's copy)."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    blob_key: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    n_images: Mapped[int] = mapped_column(Integer)
    labelled: Mapped[bool] = mapped_column(Boolean)
    class_names: Mapped[list[str] | None] = mapped_column(JSON)
    class_counts: Mapped[list[int] | None] = mapped_column(JSON)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)


class Analysis(RunLabelsMixin, TimestampMixin, Base):
    """One interaction analysis of a model over a set of images (one item per image)."""

    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_players: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    items: Mapped[list[AnalysisItem]] = relationship(
        back_populates="analysis",
        cascade="all, delete-orphan",
        order_by="AnalysisItem.position",
        lazy="selectin",
    )


class AnalysisItem(LeaseMixin, Base):
    """The analysis of one image: its own task (or chunk tasks), progress and results."""

    __tablename__ = "analysis_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    result_key: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    variant: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What is analysed (migration 0012): the image as it is (null), with Gaussian noise
    ``{"kind": "noise", "draw": d}`` or under attack ``{"kind": "pgd"}`` (stability)."""

    analysis: Mapped[Analysis] = relationship(back_populates="items")
    chunks: Mapped[list[Chunk]] = relationship(
        cascade="all, delete-orphan", order_by="Chunk.start", lazy="selectin"
    )


class Chunk(LeaseMixin, Base):
    """A range of masks ``[start, stop)`` of one item's logit table, computed by one task."""

    __tablename__ = "chunks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    item_id: Mapped[str] = mapped_column(
        ForeignKey("analysis_items.id", ondelete="CASCADE"), index=True
    )
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    done: Mapped[int] = mapped_column(Integer, default=0)
    blob_key: Mapped[str | None] = mapped_column(String(64))
    seconds: Mapped[float | None] = mapped_column(Float)
    """Forward-pass time of this range (the item's table records the sum)."""


class LogitTable(TimestampMixin, Base):
    """Cache: identical requests (model bytes, image bytes, forward-pass parameters, engine
    version) share one stored logit table, so no forward pass is repeated."""

    __tablename__ = "logit_tables"

    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_key: Mapped[str] = mapped_column(String(64))
    n_players: Mapped[int] = mapped_column(Integer)
    classes: Mapped[int] = mapped_column(Integer)
    forward_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class LearnedBaseline(TimestampMixin, Base):
    """Cache: the baseline an image learned (the "learned" baseline option, migration 0011),
    per model and image bytes, masking, target, output and learning settings; the blob is
    the ``[C, H, W]`` float32 baseline (npy)."""

    __tablename__ = "learned_baselines"

    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_key: Mapped[str] = mapped_column(String(64))
    target: Mapped[int] = mapped_column(Integer)
    loss_before: Mapped[float] = mapped_column(Float)
    loss_after: Mapped[float] = mapped_column(Float)
    history: Mapped[list[float]] = mapped_column(JSON)


class ComponentJob(RunLabelsMixin, LeaseMixin, TimestampMixin, Base):
    """Feature components of different complexity at one layer (SCIENCE.md §7)."""

    __tablename__ = "component_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    compare_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE")
    )
    second_compare_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE")
    )
    """§7: the second exemplary model (migration 0018)."""
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="components", server_default="components")
    """"components" (§7) or "consistency" (§8: ``layer`` of the model reconstructed from and
    into ``compare_layer`` of the compare model)."""
    compare_layer: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_key: Mapped[str | None] = mapped_column(String(64))
    """npz in the blob store: component maps of a few test images (consistency: per-channel
    variances of each part)."""

    @property
    def compare_model_ids(self) -> list[str]:
        """§7: the exemplary models, in order (none, one or two)."""
        return [m for m in (self.compare_model_id, self.second_compare_model_id) if m]

    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    """Identical requests (same model and data bytes, layer, settings, engine) share results."""


class ShareLink(TimestampMixin, Base):
    """A read-only link to one result: an interaction analysis or a component analysis."""

    __tablename__ = "share_links"
    __table_args__ = (
        CheckConstraint("(analysis_id IS NULL) <> (component_job_id IS NULL)", name="one_target"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analysis_id: Mapped[str | None] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    component_job_id: Mapped[str | None] = mapped_column(
        ForeignKey("component_jobs.id", ondelete="CASCADE"), index=True
    )
    token: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TrainingRun(LeaseMixin, TimestampMixin, Base):
    """Training a project architecture with the order losses of SCIENCE.md §5 (migration 0015).

    Checkpoints land as a model series (``series``) while it runs; the final weights become
    an ordinary model (``model_id``) and, if asked, an exact analysis of it over held-out
    images (``evaluation_id``). Runs started together share an ``experiment`` id."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    experiment: Mapped[str | None] = mapped_column(String(32), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    init_model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """One record per finished epoch: losses, accuracies, seconds, forward passes."""
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Final: test accuracy, adversarial accuracy per L∞ budget, split sizes."""
    series: Mapped[str | None] = mapped_column(String(200))
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    evaluation_id: Mapped[str | None] = mapped_column(
        ForeignKey("analyses.id", ondelete="SET NULL")
    )
