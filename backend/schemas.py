"""Request and response bodies: ``XCreate`` in, ``XPublic`` / ``XsPublic`` out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

Status = Literal["queued", "running", "done", "failed", "cancelled"]


def _utc(value: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]
"""A UTC time, always serialised with its offset (``…Z``)."""

Tags = Annotated[list[str], BeforeValidator(lambda value: value or [])]
"""A run's tags (a row without any stores ``NULL``)."""


class WorkspacePublic(BaseModel):
    id: str
    secret: str | None = Field(
        default=None,
        description="Only when the workspace is created: keep it, it is not shown again.",
    )


class ModelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    filename: str
    size_bytes: int
    status: Literal["pending", "validating", "ready", "failed"]
    error: str | None
    format: str | None
    input_shape: list[int] | None
    num_classes: int | None
    labels: list[str] | None
    mean: list[float] | None
    std: list[float] | None
    architecture: str | None
    layers: list[str] | None
    layer_shapes: dict[str, list[int]] | None = None
    seconds_per_pass: float | None
    builtin: bool
    created_at: Timestamp
    series: str | None = None
    series_step: int | None = None
    train_samples: int | None = None


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class SeriesPublic(BaseModel):
    """A model series: checkpoints of one model in step order."""

    name: str
    builtin: bool
    steps: list[int]
    model_ids: list[str]
    statuses: list[str]


class SeriesListPublic(BaseModel):
    data: list[SeriesPublic]
    count: int


class ImagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    size_bytes: int
    content_type: str
    width: int
    height: int
    mode: str
    label: str | None
    builtin: bool
    created_at: Timestamp


class ImagesPublic(BaseModel):
    data: list[ImagePublic]
    count: int


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    kind: Literal["digits", "zip"]
    size_bytes: int
    n_images: int
    labelled: bool
    class_names: list[str] | None
    class_counts: list[int] | None
    builtin: bool
    created_at: Timestamp


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class HybridSpec(BaseModel):
    """Orders above ``split·(n−2)`` (the noisy middle and high ones) on fewer pairs with
    more contexts each."""

    split: float = Field(default=0.25, gt=0, lt=1)
    pairs: int = Field(default=400, ge=1, le=100_000)
    contexts: int = Field(default=40, ge=1, le=10_000)


class SampledSpec(BaseModel):
    """A sampled analysis (SCIENCE.md §4): ``I^(m)(i,j)`` for chosen pairs and orders,
    each averaged over random contexts, for grids too large for the exact method."""

    orders: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=256, description="orders m; default: from `ratios`"
    )
    ratios: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0],
        min_length=1,
        max_length=256,
        description="orders m = ⌊(n−2)·r⌋ (the paper's 13 ratios by default)",
    )
    radius: int | None = Field(
        default=2, ge=1, description="pairs within this many patches (Chebyshev); null: all"
    )
    random_pairs: int | None = Field(
        default=None, ge=1, le=100_000, description="draw this many of those pairs at random"
    )
    contexts: int = Field(default=10, ge=1, le=10_000, description="samples per pair and order")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    hybrid: HybridSpec | None = None


class AndOrSpec(BaseModel):
    """Split each exact result into AND and OR interactions (SCIENCE.md §2), learned to be
    sparse; ``noise`` also removes a small noise term ``q`` (|q| ≤ 4 % of |v(N) − v(∅)|)."""

    steps: int = Field(default=10_000, ge=1, le=100_000)
    noise: bool = False


class LearnedBaselineSpec(BaseModel):
    """The "learned" baseline: each input value's baseline learned within ``start ± radius``
    (input units after normalisation) to make the interactions sparse (SCIENCE.md §3)."""

    start: Literal["zero", "mean", "blur"] = "mean"
    radius: float = Field(default=0.5, gt=0, le=100)
    steps: int = Field(default=100, ge=1, le=2000)


class StabilitySpec(BaseModel):
    """A stability analysis (SCIENCE.md §6, seed 003): exact interactions of each image as
    it is, with Gaussian noise, and under a PGD attack, compared per order."""

    sigma: float = Field(default=0.1, gt=0, le=10, description="noise SD, input units")
    draws: int = Field(default=4, ge=1, le=32, description="noisy copies of each image")
    adversarial: bool = Field(default=True, description="also a PGD attack (torch models)")
    epsilon: float = Field(default=0.05, gt=0, le=10, description="L∞ budget, input units")
    pgd_steps: int = Field(default=10, ge=1, le=200)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class AnalysisCreate(BaseModel):
    model_id: str | None = Field(default=None, description="the model (mode dynamics: unused)")
    image_ids: list[str] = Field(
        default=[], max_length=1000, description="images, and/or an image set below"
    )
    dataset_id: str | None = Field(default=None, description="take images from this image set")
    dataset_pick: Literal["first", "per_class"] = Field(
        default="first", description="the first k images, or k of each class"
    )
    dataset_k: int = Field(default=10, ge=1, le=5000)
    mode: Literal["exact", "sampled", "stability", "dynamics"] = "exact"
    series: str | None = Field(
        default=None, description="mode `dynamics`: the model series (checkpoints) to compare"
    )
    stability: StabilitySpec | None = Field(
        default=None, description="settings of a stability analysis (mode `stability`)"
    )
    and_or: AndOrSpec | None = Field(
        default=None, description="exact analyses: also the AND-OR split of each image"
    )
    sampled: SampledSpec | None = Field(
        default=None, description="settings of a sampled analysis (mode `sampled`)"
    )
    grid: str = Field(default="4x4", description="rows x cols, e.g. 4x4")
    players: list[int] | None = Field(
        default=None, description="cells used as players (default all)"
    )
    others_present: bool = True
    baseline: Literal["zero", "mean", "blur", "learned"] = "mean"
    learned_baseline: LearnedBaselineSpec | None = Field(
        default=None, description='settings of baseline "learned" (defaults if omitted)'
    )
    baseline_image_id: str | None = None
    target: int | Literal["predicted"] = "predicted"
    output: Literal["log-odds", "logit", "prob", "log-prob"] = "log-odds"
    tau: float = Field(default=0.05, gt=0, le=1)
    top_k: int = Field(default=20, ge=1, le=500)

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: str) -> str:
        parts = value.lower().replace("×", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
            raise ValueError("grid must look like 4x4 (rows x cols)")
        return f"{int(parts[0])}x{int(parts[1])}"


class ItemPublic(BaseModel):
    id: str
    image_id: str
    variant: dict[str, Any] | None = Field(
        default=None, description="stability: the noisy ({kind: noise, draw}) or attacked input"
    )
    status: Status
    progress_done: int
    progress_total: int
    cached: bool
    error: str | None
    summary: dict[str, Any] | None


class AnalysisPublic(BaseModel):
    id: str
    name: str | None = Field(default=None, description="what a person calls it (optional)")
    note: str | None = Field(default=None, description="a person's note about it")
    tags: Tags = Field(default=[], description="tags, for filtering lists")
    dataset_id: str | None = Field(
        default=None, description="the image set its images were taken from, if one"
    )
    dataset_name: str | None = None
    model_id: str
    model_name: str
    labels: list[str] | None = Field(description="the model's class labels, if given")
    input_shape: list[int] | None
    params: dict[str, Any]
    n_players: int
    status: Status
    progress_done: int
    progress_total: int
    eta_seconds: float | None
    forward_passes: int = Field(
        description="forward passes this analysis costs (cached tables excluded)"
    )
    error: str | None
    interrupted: bool = Field(
        default=False,
        description="queued work was lost (e.g. the embedded worker restarted): retry",
    )
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    summary: dict[str, Any] | None
    items: list[ItemPublic]


class AnalysesPublic(BaseModel):
    data: list[AnalysisPublic]
    count: int


class ComponentJobCreate(BaseModel):
    model_id: str
    dataset_id: str
    layer: str = Field(description="a layer name from the validated model's `layers`")
    compare_model_id: str | None = Field(
        default=None,
        description="an exemplary model of the same task: enables reliability (older "
        "clients; `compare_model_ids` takes two)",
    )
    compare_model_ids: list[str] = Field(
        default=[],
        max_length=2,
        description="up to two exemplary models of the same task (seed 001 uses two): "
        "reliability is the share of each component they reproduce",
    )
    reliability: Literal["cycle", "preview"] = Field(
        default="cycle",
        description='"cycle": the paper\'s estimator (parallel heads, cycle maps); "preview": '
        "the fast closed form on separately trained disentanglers",
    )
    orders: list[Annotated[int, Field(ge=0)]] = Field(
        default=[0, 1, 2, 4, 8],
        min_length=1,
        max_length=6,
        description="numbers of ReLU layers, each at most CONCEPTLENS_MAX_COMPONENT_ORDER",
    )
    width: int = Field(default=32, ge=4, description="at most CONCEPTLENS_MAX_COMPONENT_WIDTH")
    epochs: int = Field(default=30, ge=1, description="at most CONCEPTLENS_MAX_COMPONENT_EPOCHS")
    max_samples: int = Field(
        default=600,
        ge=20,
        description="images used (train+test), at most CONCEPTLENS_MAX_COMPONENT_SAMPLES",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class ConsistencyJobCreate(BaseModel):
    """Knowledge consistency (SCIENCE.md §8) between model A at ``layer`` and model B
    (``compare_model_id``) at ``compare_layer``: fuzziness orders 0, 1 and 2, both directions."""

    model_id: str = Field(description="model A")
    compare_model_id: str = Field(description="model B, of the same task (input and classes)")
    dataset_id: str
    layer: str = Field(description="a layer of model A")
    compare_layer: str = Field(description="a layer of model B")
    width: int = Field(
        default=16,
        ge=4,
        description="channels of the non-linear branches, at most CONCEPTLENS_MAX_COMPONENT_WIDTH",
    )
    epochs: int = Field(default=30, ge=1, description="at most CONCEPTLENS_MAX_COMPONENT_EPOCHS")
    max_samples: int = Field(
        default=600,
        ge=20,
        description="images used (fit+held out), at most CONCEPTLENS_MAX_COMPONENT_SAMPLES",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class ComponentJobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None = Field(default=None, description="what a person calls it (optional)")
    note: str | None = Field(default=None, description="a person's note about it")
    tags: Tags = Field(default=[], description="tags, for filtering lists")
    kind: str = Field(default="components", description='"components" (§7) or "consistency" (§8)')
    model_id: str
    compare_model_id: str | None
    compare_model_ids: list[str] = Field(default=[], description="§7: the exemplary models")
    compare_layer: str | None = Field(default=None, description="consistency: model B's layer")
    dataset_id: str
    layer: str
    params: dict[str, Any]
    status: Status
    progress_done: int
    progress_total: int
    error: str | None
    metrics: dict[str, Any] | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    model_name: str | None = None
    compare_model_name: str | None = None
    compare_model_names: list[str] = Field(default=[], description="§7: the exemplars' names")
    dataset_name: str | None = None
    eta_seconds: float | None = None


class ComponentJobsPublic(BaseModel):
    data: list[ComponentJobPublic]
    count: int


def _tag(value: str) -> str:
    tag = " ".join(value.split())
    if not tag:
        raise ValueError("a tag must not be blank")
    return tag


Tag = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_tag)]


class RunLabelsUpdate(BaseModel):
    """Name, note and tags of an analysis or component analysis (PATCH): a field left out
    stays as it is; ``null`` (or an empty string, or ``[]``) clears it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=5000)
    tags: list[Tag] | None = Field(
        default=None, max_length=20, description="at most 20 tags of 1-40 characters"
    )


class SharePublic(BaseModel):
    id: str
    analysis_id: str | None
    component_job_id: str | None
    token: str
    url: str
    created_at: Timestamp
    revoked: bool


class SharesPublic(BaseModel):
    data: list[SharePublic]
    count: int


class ErrorPublic(BaseModel):
    """Every refusal: a sentence for a person."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorPublic(ErrorPublic):
    """A parameter out of range: ``detail`` as sentences, ``errors`` (for programs) when the
    request schema refused it, absent for a configured cap."""

    errors: list[ValidationIssue] = Field(
        default_factory=list, description="one per parameter, when the schema refused it"
    )


# ---------------------------------------------------------------- training (SCIENCE.md §5)

TrainingPreset = Literal["normal", "encourage low", "encourage middle", "encourage high"]


class OrderTermSpec(BaseModel):
    """One order-loss term: ``weight``·L±(r1, r2) over interactions of orders in [r1·n, r2·n]."""

    weight: float = Field(ge=0, le=100, description="λ")
    r1: float = Field(ge=0, le=1, description="|S1| = ⌊r1·n⌋")
    r2: float = Field(gt=0, le=1, description="|S2| = ⌊r2·n⌋, above r1")

    @field_validator("r2")
    @classmethod
    def _above_r1(cls, value: float, info: Any) -> float:
        r1 = info.data.get("r1")
        if r1 is not None and value <= r1:
            raise ValueError(f"r2 must be above r1 ({r1})")
        return value


class AttackSpec(BaseModel):
    """Adversarial accuracy of the final model under L∞ PGD on its test split."""

    eps: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default=[0.02, 0.05, 0.1], max_length=6, description="L∞ budgets, in input units"
    )
    steps: int = Field(default=10, ge=1, le=100)


class EvaluationSpec(BaseModel):
    """An exact interaction analysis of the final model, started when training ends."""

    grid: str = Field(default="4x4", description="rows x cols, at most 20 players")
    images: int = Field(default=8, ge=1, le=50, description="the first images of the test split")
    baseline: Literal["zero", "mean", "blur"] = "zero"
    output: Literal["log-odds", "logit", "prob", "log-prob"] = "log-odds"

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: str) -> str:
        return AnalysisCreate._grid(value)


class TrainingRunCreate(BaseModel):
    name: str | None = Field(default=None, max_length=200, description="default: the preset")
    dataset_id: str = Field(description="a labelled image set (the built-in digits, or a zip)")
    architecture: Literal["digit_cnn", "small_vgg", "small_resnet"] = "digit_cnn"
    init_model_id: str | None = Field(
        default=None, description="fine-tune this safetensors model of the same architecture"
    )
    preset: TrainingPreset = "normal"
    plus: OrderTermSpec | None = Field(
        default=None,
        description="λ1·L+(r1, r2); when plus or minus is given, they replace both of the "
        "preset's terms",
    )
    minus: OrderTermSpec | None = Field(default=None, description="λ2·L−(r1, r2)")
    grid: str = Field(default="4x4", description="patch grid of the order losses")
    baseline: Literal["zero", "mean"] = "zero"
    samples: int = Field(default=1, ge=1, le=8, description="pairs S1 ⊂ S2 per image and term")
    epochs: int = Field(default=8, ge=1, description="at most CONCEPTLENS_MAX_TRAINING_EPOCHS")
    batch_size: int = Field(default=32, ge=4, le=1024)
    lr: float = Field(default=1e-2, gt=0, le=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    max_train: int | None = Field(
        default=None, ge=10, description="train on the first N training images (default all)"
    )
    checkpoint_every: int = Field(default=1, ge=1, description="keep a checkpoint every k epochs")
    attack: AttackSpec = AttackSpec()
    evaluate: EvaluationSpec | None = EvaluationSpec()

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: str) -> str:
        return AnalysisCreate._grid(value)


class TrainingExperimentCreate(TrainingRunCreate):
    presets: list[TrainingPreset] = Field(
        default=["normal", "encourage low", "encourage middle", "encourage high"],
        min_length=2,
        max_length=4,
        description="one run per preset, all other settings shared",
    )


class TrainingRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    experiment: str | None
    dataset_id: str
    init_model_id: str | None
    params: dict[str, Any]
    status: Status
    progress_done: int
    progress_total: int
    error: str | None
    history: list[dict[str, Any]] | None
    metrics: dict[str, Any] | None
    series: str | None
    model_id: str | None
    evaluation_id: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    dataset_name: str | None = None
    eta_seconds: float | None = None


class TrainingRunsPublic(BaseModel):
    data: list[TrainingRunPublic]
    count: int
