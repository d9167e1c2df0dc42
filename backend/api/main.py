"""Every API router, collected in one place (mounted under ``/api``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from backend.api.deps import SessionDep, owned_analysis, owned_analysis_results
from backend.api.present import present_analysis
from backend.api.problems import ERROR_RESPONSES
from backend.api.routes import (
    analyses,
    compare,
    components,
    consistency,
    datasets,
    images,
    models,
    results,
    series,
    shares,
    training,
    workspace,
)
from backend.db.models import Analysis
from backend.schemas import AnalysisPublic

api_router = APIRouter(responses=ERROR_RESPONSES)
api_router.include_router(workspace.router)
api_router.include_router(models.router)
api_router.include_router(series.router)
api_router.include_router(images.router)
api_router.include_router(datasets.router)
api_router.include_router(components.router)
api_router.include_router(
    components.component_results_router("/components/{job_id}", "components", shares.owned_job)
)
api_router.include_router(consistency.router)
api_router.include_router(
    consistency.job_exports_router("/components/{job_id}", "components", shares.owned_job)
)
api_router.include_router(analyses.router)
api_router.include_router(
    results.results_router("/analyses/{analysis_id}", "results", owned_analysis_results)
)
api_router.include_router(
    compare.run_views_router(
        "/analyses/{analysis_id}", "compare", owned_analysis, compare.owned_other
    )
)
api_router.include_router(shares.router)
api_router.include_router(training.router)
api_router.include_router(
    results.results_router("/shared/{token}", "shared", shares.shared_analysis)
)
api_router.include_router(
    components.component_results_router("/shared-components/{token}", "shared", shares.shared_job)
)
api_router.include_router(
    compare.run_views_router(
        "/shared/{token}", "shared", shares.shared_analysis, compare.shared_other
    )
)
api_router.include_router(
    consistency.job_exports_router("/shared-components/{token}", "shared", shares.shared_job)
)


@api_router.get("/shared/{token}", response_model=AnalysisPublic, tags=["shared"])
def shared_analysis(
    analysis: Annotated[Analysis, Depends(shares.shared_analysis)], session: SessionDep
) -> AnalysisPublic:
    """The analysis a share link opens, read-only, without any workspace or cookie."""
    return present_analysis(session, analysis)
