"""Settings shared by the API and the workers: one class, one env prefix ``CONCEPTLENS_``.

Embedded default (nothing to set): SQLite file and blobs under ``./data``, the ``memory://``
broker with a Celery worker in a thread of the web process. Production: set
``CONCEPTLENS_DATABASE_URL`` (Postgres) and ``CONCEPTLENS_BROKER_URL`` (Redis); the API
then only enqueues and separate ``celery worker`` processes do the work.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCEPTLENS_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str = ""
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/conceptlens.db``."""
    blob_dir: Path | None = None
    """Content-addressed blob store folder; default ``<data_dir>/blobs``."""
    broker_url: str = "memory://"
    queue: str = "conceptlens"
    """Broker queue the API sends tasks to; workers must consume it (``celery … -Q``)."""
    embedded_worker: bool | None = None
    """Run a Celery worker in a thread of the web process; default: when the broker is memory://."""
    worker_concurrency: int = Field(default=2, ge=1)

    max_model_bytes: int = Field(default=100 * 2**20, ge=1)
    max_image_bytes: int = Field(default=10 * 2**20, ge=1)
    max_image_pixels: int = Field(default=16_000_000, ge=1)
    max_input_values: int = Field(default=3 * 1024 * 1024, ge=1)
    """Most values C·H·W of one model input (a 1024×1024 RGB image): the size given with an
    upload or fixed by an ONNX graph, checked before the model is stored or loaded."""
    max_images_per_upload: int = Field(default=32, ge=1)
    max_dataset_bytes: int = Field(default=200 * 2**20, ge=1)
    max_series_bytes: int = Field(default=500 * 2**20, ge=1)
    """All checkpoints of one model-series upload together (each is also held to
    ``max_model_bytes``)."""
    max_dataset_images: int = Field(default=5000, ge=1)
    max_dataset_pixels: int = Field(default=300_000_000, ge=1)
    """Pixels of all images of one image set together (each is decoded once when checked)."""
    max_preview_pixels: int = Field(default=4_000_000, ge=1)
    """Largest preview PNG: the scale is lowered (or the image shrunk) to stay within it."""
    max_request_bytes: int = Field(default=2**20, ge=1024)
    """Body of any request that is not an upload (JSON)."""
    max_component_order: int = Field(default=16, ge=0)
    max_component_width: int = Field(default=256, ge=4)
    max_component_epochs: int = Field(default=500, ge=1)
    max_component_samples: int = Field(default=20_000, ge=20)
    max_training_epochs: int = Field(default=200, ge=1)
    """Epochs of one training run (issue 12: training with the order losses)."""
    max_training_images: int = Field(default=20_000, ge=10)
    """Training images of one training run (the rest of the set is its test split)."""
    trust_forwarded_headers: bool = False
    """Behind a proxy: believe ``X-Forwarded-Proto`` (the workspace cookie gets ``Secure``)."""
    max_players: int = Field(default=20, ge=2, le=24)
    """Exact analysis costs 2^n forward passes per image."""
    chunk_size: int = Field(default=16_384, ge=64)
    """Masks per chunk task: an image with more masks is split across workers (unless
    other images of its analysis are queued: ``whole_image_max_masks``)."""
    whole_image_max_masks: int = Field(default=1 << 20, ge=64)
    """An image with more masks than ``chunk_size`` still runs in one task, up to this many
    masks, while other images of its analysis are queued for the other workers."""
    max_and_or_players: int = Field(default=16, ge=2, le=24)
    """Players of an exact analysis with the AND-OR split (each step is O(n·2^n))."""
    max_learned_baseline_players: int = Field(default=12, ge=2, le=20)
    """Players of an analysis with a learned baseline (each step runs all 2^n masks
    forward and backward)."""
    max_stability_players: int = Field(default=12, ge=2, le=20)
    """Players of a stability analysis (images × (1 + draws + 1) × 2^n passes)."""
    max_sampled_players: int = Field(default=1024, ge=4)
    """Largest grid (patches) of a sampled analysis (32×32)."""
    max_sampled_passes: int = Field(default=20_000_000, ge=1000)
    """Expected forward passes of one image of a sampled analysis."""
    sampled_chunk_passes: int = Field(default=65_536, ge=256)
    """Expected forward passes per chunk task of a sampled analysis."""
    max_analysis_images: int = Field(default=200, ge=1)
    """Images of one analysis (chosen one by one or from an image set)."""
    max_item_tasks: int = Field(default=64, ge=1)
    """Tasks an analysis starts with; each runs its queued images in turn until none is
    left, so at most this many worker processes share one analysis's images."""
    batch_size: int = Field(default=1024, ge=1)
    task_time_limit_s: int = Field(default=3600, ge=10)
    lease_s: float = Field(default=60.0, gt=0)
    """A running job renews its lease every third of this; a lease this old is expired."""
    sweep_interval_s: float = Field(default=30.0, gt=0)
    """How often each worker looks for expired leases (and once at its start)."""
    max_attempts: int = Field(default=3, ge=1)
    """Times a job whose worker vanished is re-queued before it is failed."""
    visibility_timeout_s: int = Field(default=7200, ge=60)
    """Redis: an unacknowledged task is delivered again after this long (duplicates are
    harmless: a job is claimed through its lease)."""
    sandbox_memory_mb: int = Field(default=8192, ge=0)
    """Address space of a model sandbox process (0: no limit; not applied on CUDA)."""
    sandbox_cpu_seconds: int = Field(default=3600, ge=0)
    """CPU seconds a model sandbox may use per call (0: no limit)."""
    sandbox_nice: int = Field(default=10, ge=0, le=19)
    """Niceness of model sandbox processes: where they share cores with the web server (the
    embedded default), pages are served before model passes run."""
    progress_interval_s: float = Field(default=0.5, gt=0)
    default_tau: float = Field(default=0.05, gt=0, le=1)
    device: str | None = None
    """Torch device for workers (``cpu``, ``cuda``, ``cuda:1``); default: CUDA when available."""
    overlap_finish: bool = True
    """Finish an analysed image (store, transform, summarise, roll up) in a thread while the
    worker's next image runs its forward passes (:mod:`worker.overlap`); false: in line."""
    compute_threads: int = Field(default=1, ge=1)
    """torch/BLAS/OpenMP threads of each worker process and of each model sandbox. One: a
    machine's cores are used by processes (``celery worker --concurrency`` = cores), which
    measured faster than threads in one process (bench/README.md, "Threads")."""

    @field_validator("database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'conceptlens.db'}"

    @property
    def blobs(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def run_embedded_worker(self) -> bool:
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.broker_url.startswith("memory://")


@lru_cache
def get_settings() -> Settings:
    return Settings()
