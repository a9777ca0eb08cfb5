# cvkit for GPU clusters: the official CUDA PyTorch runtime image + cvkit, `cvkit-train` as the entry point.
#
# Build:
#   docker build -t cvkit .
# Train (arguments are Hydra overrides for cvkit-train; runs land in /workspace/outputs/<date>_<time>/):
#   docker run --rm --gpus all --shm-size=8g \
#     -v "$PWD/outputs:/workspace/outputs" -v /datasets:/workspace/data:ro \
#     cvkit data=imagefolder data.root=/workspace/data/my_images trainer=gpu
# Your own configs: mount a folder laid out like cvkit's configs/ (e.g. experiment/mine.yaml starting with
# `# @package _global_`, data/my_data.yaml) at /workspace/configs-user and add it to Hydra's search path
# with --config-dir; cvkit's packaged configs stay available beside it:
#   docker run --rm --gpus all --shm-size=8g \
#     -v "$PWD/my-configs:/workspace/configs-user:ro" -v "$PWD/outputs:/workspace/outputs" \
#     -v /datasets:/workspace/data:ro \
#     cvkit --config-dir /workspace/configs-user experiment=mine
# (`hydra.searchpath=[file:///workspace/configs-user]` instead of --config-dir does the same.)
# The container runs as uid 1000 (user `cvkit`); for bind-mounted output folders owned by someone else, add
# `--user "$(id -u):$(id -g)"`. Evaluation: `docker run --entrypoint cvkit-eval cvkit ckpt_path=...`.
# data=mnist/fashion_mnist/cifar10 read torchvision's layout under data.root (MNIST as bare .gz: mount it rw).

FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

# Caches (pretrained weights of torch hub / timm via Hugging Face, matplotlib) go to a folder that any
# --user can write; mount a volume there to keep downloaded weights between runs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    XDG_CACHE_HOME=/workspace/.cache \
    MPLCONFIGDIR=/workspace/.cache/matplotlib

WORKDIR /opt/cvkit
COPY pyproject.toml README.md constraints.txt ./
COPY src/ src/
COPY configs/ configs/

# Non-editable install of the tested set (constraints.txt), except torch, torchvision and their CUDA libraries,
# which stay the base image's builds: pinned to them, so no dependency can make pip replace them with other
# (e.g. CPU-only) wheels from PyPI.
RUN python -c "from importlib.metadata import version; \
        print('\n'.join(f'{p}=={version(p)}' for p in ('torch', 'torchvision')))" \
        > /tmp/constraints.txt \
    && grep -v -i -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' constraints.txt \
        >> /tmp/constraints.txt \
    && pip install --no-cache-dir --constraint /tmp/constraints.txt . \
    && rm /tmp/constraints.txt \
    && python -c "import cvkit.train, torch; print('cvkit on torch', torch.__version__, torch.version.cuda)" \
    && cvkit-train --cfg job > /dev/null

RUN (getent passwd 1000 > /dev/null || useradd --create-home --uid 1000 --shell /bin/bash cvkit) \
    && mkdir -p /workspace/outputs /workspace/data /workspace/configs-user /workspace/.cache/matplotlib \
    && chown -R 1000:1000 /workspace \
    && chmod 1777 /workspace/.cache /workspace/.cache/matplotlib

WORKDIR /workspace
USER 1000:1000
VOLUME ["/workspace/outputs", "/workspace/data", "/workspace/configs-user"]

ENTRYPOINT ["cvkit-train"]
CMD ["--help"]
