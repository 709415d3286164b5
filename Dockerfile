# One image for the API and the workers (docs/service.md, Docker):
#   docker run ... layerfuse            -> the API (layerfuse serve)
#   docker run ... layerfuse worker     -> a worker (layerfuse worker)
# CPU torch by default; for CUDA: --build-arg TORCH_VARIANT=cu128 (any CUDA wheel index PyTorch
# publishes for this torch version).
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LAYERFUSE_DATA_DIR=/data \
    HF_HUB_OFFLINE=1

RUN useradd --create-home --uid 10001 layerfuse \
    && mkdir -p /data \
    && chown layerfuse:layerfuse /data

WORKDIR /app

# torch first, from PyTorch's own index: its own layer, cached across code changes, and no
# unpinned resolution dragging in gigabytes of CUDA packages on a CPU build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

COPY pyproject.toml README.md constraints.txt ./
COPY compression ./compression
COPY service ./service
COPY worker ./worker
COPY layerfuse ./layerfuse
# onnx: export.formats ["hf", "onnx"]; mlflow: a job's MLflow integration (both in the worker).
# constraints.txt (scripts/lock): the exact versions CI tested, so a rebuild gets the same image.
RUN pip install -c constraints.txt ".[service,onnx,mlflow]"

USER layerfuse
VOLUME ["/data"]
EXPOSE 8000

ENTRYPOINT ["layerfuse"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
