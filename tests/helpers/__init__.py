"""What the tests share, by what it is (fixtures stay in tests/conftest.py; tests import from here only):

- paths: the repository root.
- datasets: the real datasets under the data root (a skip when one is missing), and small copies of them.
- torchvision_files: tiny but valid MNIST / Fashion-MNIST / CIFAR-10 files in torchvision's on-disk formats.
- configs: composing cvkit's train and export configs in the test process.
- presets: the named override lists of the tiny training runs.
- cli: running cvkit's console scripts as a user does.
- callbacks: Lightning callbacks that tests plug into real runs (faults, recorders), and the overrides doing it.
- logs: reading what a run wrote: metrics.json, summary.json, TensorBoard and CSV logs.
- checkpoints: loading checkpoints and comparing their weights.
- coco: pycocotools' scores, computed as anyone would on the files or dicts.
- steps: one optimizer step of a model, checked to have trained.
- tasks: tasks built directly: a training plan of given numbers, the arguments every task takes.
- network: a free local port, and a gloo process group of forked ranks.
"""
