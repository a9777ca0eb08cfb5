# cvkit for GPU clusters: Python 3.11 with the tested set of constraints.txt (torch and torchvision included) and
# every extra (trackers, sweep, slurm); `cvkit-train` as the entry point.
#
# Base: the official python:3.11-slim image, not pytorch/pytorch. constraints.txt pins torch 2.14.1 and torchvision
# 0.29.1 as PyPI's default Linux wheels: CUDA 13.0 builds (kernels for sm_75 to sm_120, Turing to Blackwell) whose
# CUDA and cuDNN libraries are pip packages pinned in the same file (cuda-toolkit, nvidia-*-cu13, triton). Installed
# from PyPI with the constraints, the image holds exactly the set CI tests, on the Python version CI tests; a
# pytorch/pytorch image would bring its own Python and its own torch build, which the constraints would have to leave
# alone. The image needs no CUDA toolkit; the host needs an NVIDIA driver for CUDA 13.0 (580 or newer) and the NVIDIA
# Container Toolkit, for `--gpus all`.
#
# Build:
#   docker build -t cvkit .
# Train (arguments are Hydra overrides for cvkit-train; runs land in /workspace/outputs/<date>_<time>/); the loader
# workers share batches through /dev/shm, which Docker sizes at 64 MB unless --shm-size says more:
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
# data=mnist/fashion_mnist/cifar10 read torchvision's layout under data.root, MNIST's files unpacked or as the .gz
# archives (read in memory), so a read-only mount works; only data.download=true writes there (and needs internet).

FROM python:3.11-slim

# Caches (pretrained weights of torch hub / timm via Hugging Face, matplotlib) go to a folder that any
# --user can write; mount a volume there to keep downloaded weights between runs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    XDG_CACHE_HOME=/workspace/.cache \
    MPLCONFIGDIR=/workspace/.cache/matplotlib

WORKDIR /opt/cvkit

# torch and torchvision at constraints.txt's versions, with their CUDA libraries, in a layer of their own (several
# GB) that stays cached while only cvkit's sources change. A CPU-only torch would fail the build.
COPY constraints.txt ./
RUN grep -i -E '^(torch|torchvision)==' constraints.txt > /tmp/torch.txt \
    && pip install --no-cache-dir --constraint constraints.txt --requirement /tmp/torch.txt \
    && rm /tmp/torch.txt \
    && python -c "import torch; assert torch.version.cuda, f'torch {torch.__version__} is a CPU-only build'"

# cvkit, non-editable, with every extra, on the same tested set: the constraints keep torch and torchvision as
# installed above.
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
COPY configs/ configs/
RUN pip install --no-cache-dir --constraint constraints.txt ".[trackers,sweep,slurm,detr,streaming]" \
    && pip check \
    && python -c "import cvkit.train, torch, torchvision; \
        print('cvkit on torch', torch.__version__, 'CUDA', torch.version.cuda, 'torchvision', torchvision.__version__)" \
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
