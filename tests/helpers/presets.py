"""Named presets of the tiny training runs the tests make: lists of overrides (Hydra syntax) for cvkit-train,
or for compose_train in the test process.

A test adds what it is about after a preset (a later override of the same key wins). The digits presets need
no data root; the others take the folder of the real dataset they train on.
"""

from __future__ import annotations

from pathlib import Path

# Data-parallel training on two CPU processes (gloo) of this machine.
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]

# The smallest digits run that trains, validates and checkpoints (1 epoch of 2 steps, 1 val batch, no logger):
# for tests that need a finished run or its checkpoint, not a trained model.
TINY_CLASSIFICATION = [
    "data.image_size=16",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "logger=none",
]

# Digits at 16 px in the loader's process, 2 val batches, CSV logs: the base of the short runs below (or add
# trainer.max_epochs and trainer.limit_train_batches to it).
SHORT_DIGITS = ["data.image_size=16", "data.num_workers=0", "trainer.limit_val_batches=2", "logger=csv"]

# Digits that learn within a few epochs of 12 steps (batches of 32, lr 0.8, no warmup), TensorBoard logs: for
# outcomes (accuracy, the logged LR curve) of runs in the test process; add trainer.max_epochs.
LEARNING_DIGITS = [
    "data.image_size=16",
    "data.batch_size=32",
    "data.num_workers=0",
    "trainer.limit_train_batches=12",
    "optimizer.lr=0.8",
    "scheduler.warmup_epochs=0",
]

# Epochs of 4 steps of 32 images, no warmup: runs whose checkpoints are counted by step; add trainer.max_epochs.
CHECKPOINTED_DIGITS = [
    *SHORT_DIGITS,
    "data.batch_size=32",
    "trainer.limit_train_batches=4",
    "scheduler.warmup_epochs=0",
]

# 2 epochs of 6 steps with 2 loader workers, no warmup: the run the fault and preemption tests interrupt and
# resume (the sampler must skip what the workers had loaded); it must end with the weights of a straight run.
RESUMABLE_DIGITS = [
    *SHORT_DIGITS,
    "data.num_workers=2",
    "trainer.limit_train_batches=6",
    "trainer.max_epochs=2",
    "scheduler.warmup_epochs=0",
]

# 2 epochs of 4 steps on two gloo processes, no warmup: the DDP run the fault tests interrupt and resume.
RESUMABLE_DDP_DIGITS = [
    *DDP_CPU,
    *SHORT_DIGITS,
    "trainer.limit_train_batches=4",
    "trainer.max_epochs=2",
    "scheduler.warmup_epochs=0",
]

# One training step, then the whole val split, no logger: for what an evaluation counts and scores (any task).
ONE_STEP_FULL_VAL = ["data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "logger=none"]


def tiny_folder_classification(root: Path) -> list[str]:
    """A real classifier in one epoch of 6 steps on an image folder (`root`) at 32 px, validated on 2 batches
    of 16, no test pass: for tests of what inference and export do with a trained checkpoint."""
    return [
        "data=imagefolder",
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=16",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "trainer.limit_val_batches=2",
        "test_after_fit=false",
    ]


def tiny_instance_segmentation(*data: str) -> list[str]:
    """Mask R-CNN (ResNet-18 FPN) at 128-160 px on the COCO instance data that `data` names: 1 epoch of 2 steps of
    2 images. Every detection is kept (score_thresh 0), so an untrained model's many masks are written and scored."""
    return [
        "task=instance_segmentation",
        *data,
        "backbone=resnet",
        "backbone.name=resnet18",
        "task.model.min_size=128",
        "task.model.max_size=160",
        "task.model.score_thresh=0.0",
        "task.model.detections_per_img=20",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "test_after_fit=false",
        "optimizer.lr=0.02",
        "optimizer.base_batch_size=16",
    ]


def tiny_detection(root: Path) -> list[str]:
    """Faster R-CNN on BCCD in VOC layout (`root`) at 128-160 px: 1 epoch of 4 steps of 2 images, 3 val and 2 test
    batches, lr 0.02 for a base batch of 16: the detection run whose files and metrics the tests re-score."""
    return [
        "task=detection",
        "data=voc",
        f"data.root={root}",
        "data.batch_size=2",
        "data.num_workers=0",
        "task.model.min_size=128",
        "task.model.max_size=160",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=3",
        "trainer.limit_test_batches=2",
        "optimizer.base_batch_size=16",
        "optimizer.lr=0.02",
    ]


def short_segmentation(root: Path) -> list[str]:
    """A small U-Net on CamVid (`root`) at 64x96: 1 epoch of 30 steps of 8 (AdamW), 4 val batches; it learns to
    beat the best constant predictor, so its metrics mean something."""
    return [
        "task=segmentation",
        "data=camvid",
        f"data.root={root}",
        "backbone=unet",
        "backbone.depth=3",
        "backbone.base_width=16",
        "data.image_size=[64,96]",
        "data.batch_size=8",
        "data.num_workers=0",
        "optimizer=adamw",
        "optimizer.lr=0.003",
        "optimizer.base_batch_size=8",
        "scheduler.warmup_epochs=0.2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=30",
        "trainer.limit_val_batches=4",
    ]
