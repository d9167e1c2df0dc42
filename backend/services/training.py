"""Training runs with the order losses (SCIENCE.md §5): check a request, create rows,
cancel, retry. The worker (:mod:`worker.training_job`) trains; nothing here imports torch.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.base import new_id
from backend.db.models import DatasetRecord, ModelRecord, TrainingRun, Workspace
from backend.errors import ClientError
from backend.schemas import TrainingExperimentCreate, TrainingRunCreate
from backend.services import jobs, resources

#: The built-in digits' split (conceptlens.models.demo.split_digits, TRAIN_SIZE and TEST_SIZE;
#: the backend does not import torch, tests/backend/services checks the two agree).
DIGITS_TRAIN, DIGITS_TEST = 1500, 297
#: A run's name is cut to this, so that the names made from it fit their 200 characters.
MAX_NAME = 170
#: One image in six of an uploaded set is held out for testing.
TEST_SHARE = 6
#: Each architecture's input (C, H, W), as conceptlens.models.architectures registers it.
INPUTS = {"digit_cnn": (1, 16, 16), "small_vgg": (3, 32, 32), "small_resnet": (3, 32, 32)}


def split_sizes(
    dataset: DatasetRecord, max_train: int | None, settings: Settings
) -> tuple[int, int]:
    """``(training images, test images)`` a run on ``dataset`` uses."""
    if dataset.kind == "digits":
        train, test = DIGITS_TRAIN, DIGITS_TEST
    else:
        test = max(1, dataset.n_images // TEST_SHARE)
        train = dataset.n_images - test
    train = min(train, max_train or train, settings.max_training_images)
    return train, test


def check(
    session: Session, workspace: Workspace, body: TrainingRunCreate, settings: Settings
) -> DatasetRecord:
    """The run's image set, or a 4xx saying what is wrong with the request."""
    if body.epochs > settings.max_training_epochs:
        raise ClientError(
            f"epochs must be at most {settings.max_training_epochs}; {body.epochs} is too many.",
            422,
        )
    dataset = resources.get(session, DatasetRecord, workspace=workspace, id=body.dataset_id)
    if not dataset.labelled:
        raise ClientError(
            "Training needs labels: upload the image set as a zip with one folder per class.",
        )
    if len(dataset.class_names or []) > 10:
        raise ClientError(
            f"The project architectures have 10 outputs; the image set has "
            f"{len(dataset.class_names or [])} classes."
        )
    if dataset.n_images < 12:
        raise ClientError(f"The image set has {dataset.n_images} images; training needs 12.")
    rows, cols = (int(p) for p in body.grid.split("x"))
    _, height, width = INPUTS[body.architecture]
    if rows > height or cols > width or rows * cols < 4:
        raise ClientError(
            f"The order-loss grid {body.grid} does not fit the {height}×{width} input of "
            f"{body.architecture} (4 to {height * width} patches).",
        )
    if body.evaluate is not None:
        er, ec = (int(p) for p in body.evaluate.grid.split("x"))
        if er * ec > settings.max_players or er > height or ec > width:
            raise ClientError(
                f"The evaluation grid {body.evaluate.grid} must fit the input and have at most "
                f"{settings.max_players} patches (its analysis is exact: 2^n passes per image).",
            )
    if body.init_model_id:
        start = resources.get(session, ModelRecord, workspace=workspace, id=body.init_model_id)
        if start.status != "ready":
            raise ClientError(f"The model to fine-tune is not ready ({start.status}).", 409)
        if start.format != "safetensors" or start.architecture != body.architecture:
            raise ClientError(
                f"Fine-tuning starts from a safetensors file of the {body.architecture} "
                f"architecture; {start.name!r} is {start.format or 'unknown'} "
                f"({start.architecture or 'no project architecture'}).",
            )
    return dataset


def create(
    session: Session,
    *,
    workspace: Workspace,
    body: TrainingRunCreate,
    settings: Settings,
    experiment: str | None = None,
) -> TrainingRun:
    dataset = check(session, workspace, body, settings)
    train, test = split_sizes(dataset, body.max_train, settings)
    batches = -(-train // body.batch_size)
    params = body.model_dump(mode="json", exclude={"name", "dataset_id", "init_model_id"})
    params.pop("presets", None)
    params.update(n_train=train, n_test=test, batches_per_epoch=batches)
    if body.evaluate is not None and body.evaluate.images > test:
        raise ClientError(
            f"The evaluation takes {body.evaluate.images} images but the test split holds "
            f"{test}: it is measured on held-out images only.",
        )
    params["init_model"] = body.init_model_id  # to notice a start model deleted meanwhile
    default = "custom" if body.plus is not None or body.minus is not None else body.preset
    run = TrainingRun(
        workspace_id=workspace.id,
        # the series, checkpoints and final model add up to 23 characters to it (limit 200)
        name=((body.name or default).strip() or default)[:MAX_NAME],
        experiment=experiment,
        dataset_id=dataset.id,
        init_model_id=body.init_model_id,
        params=params,
        progress_total=body.epochs * batches + len(body.attack.eps),
    )
    session.add(run)
    session.flush()
    run.series = f"{run.name} (training run {run.id[:8]})"
    session.commit()
    return run


def create_experiment(
    session: Session, *, workspace: Workspace, body: TrainingExperimentCreate, settings: Settings
) -> list[TrainingRun]:
    """One run per preset, every other setting shared; the runs share an experiment id."""
    if len(set(body.presets)) != len(body.presets):
        raise ClientError("Give each preset once.")
    if body.plus is not None or body.minus is not None:
        raise ClientError("An experiment compares the presets: leave plus and minus out.")
    experiment = new_id()
    # each run is called "<name> · <preset>", within MAX_NAME
    prefix = f"{body.name.strip()[:150]} · " if body.name and body.name.strip() else ""
    runs = []
    for preset in body.presets:
        one = TrainingRunCreate(**{**body.model_dump(), "preset": preset, "name": prefix + preset})
        runs.append(
            create(session, workspace=workspace, body=one, settings=settings, experiment=experiment)
        )
    return runs


def visible(
    session: Session, *, workspace: Workspace, experiment: str | None = None
) -> list[TrainingRun]:
    query = select(TrainingRun).where(TrainingRun.workspace_id == workspace.id)
    if experiment is not None:
        query = query.where(TrainingRun.experiment == experiment)
    return list(session.scalars(query.order_by(TrainingRun.created_at.desc())))


def get(session: Session, *, workspace: Workspace, run_id: str) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None or run.workspace_id != workspace.id:
        raise ClientError("No such training run in this workspace.", 404)
    return run


def cancel(session: Session, run: TrainingRun) -> None:
    """End the run now (a worker still on it stops after its current batch); checkpoints
    kept so far stay as a model series."""
    jobs.cancel(session, run, "training run")


def retry(session: Session, run: TrainingRun) -> None:
    """Train again from the start (the same seed gives the same weights, so checkpoints
    already kept are not stored twice)."""
    jobs.retry(session, run, "training run")


def delete(session: Session, run: TrainingRun) -> None:
    """Delete the run's record, cancelling it first if it is still queued or running; the
    models it produced stay."""
    jobs.delete(session, run, "training run")
