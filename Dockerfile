# One image for the API, the workers and the migration job.
FROM python:3.11-slim
WORKDIR /app
# The service (backend/, worker/, frontend/) runs from /app; `pip install` adds the library.
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
# A CUDA build of torch for GPU workers: override TORCH_SPEC at build time.
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY conceptlens conceptlens
COPY backend backend
COPY worker worker
COPY frontend frontend
RUN pip install ".[service]"
EXPOSE 8000
