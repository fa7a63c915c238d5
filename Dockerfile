# crackscan: the API and the training worker share this image.
#   docker build -t crackscan .                                  # CPU
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t crackscan:cuda .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# PyTorch first, in its own layer: it is the largest and changes least.
RUN pip install --index-url ${TORCH_INDEX} torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY models models
COPY app app
COPY worker worker
RUN pip install .

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 CRACKSCAN_DATA_DIR=/var/lib/crackscan
RUN useradd --create-home --uid 10001 crackscan \
    && mkdir -p /var/lib/crackscan && chown crackscan /var/lib/crackscan
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=crackscan alembic.ini ./
COPY --chown=crackscan migrations migrations
USER crackscan
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz'); sys.exit(0)"
CMD ["crackscan", "serve", "--host", "0.0.0.0", "--port", "8000"]
