"""Checkpoints: their files (written whole, found, read: :mod:`~cvkit.checkpoints.files`) and what cvkit
keeps in them beside Lightning's state (:mod:`~cvkit.checkpoints.content`)."""

from cvkit.checkpoints.content import (
    SCHEDULE_KEY,
    RunRecord,
    SavedRun,
    TaskState,
    init_weights,
    resume_point,
    save_task_state,
    save_tracker_runs,
)
from cvkit.checkpoints.files import (
    CHECKPOINT_DIR,
    INTERRUPTED,
    LAST,
    PARTIAL_SUFFIX,
    PERIODIC_PREFIX,
    checkpoint_in,
    load_checkpoint,
    newest_readable,
    run_checkpoints,
    save_streamed,
    sync_folder,
    tensor_bytes,
    write_atomically,
)

__all__ = [
    "CHECKPOINT_DIR",
    "INTERRUPTED",
    "LAST",
    "PARTIAL_SUFFIX",
    "PERIODIC_PREFIX",
    "SCHEDULE_KEY",
    "RunRecord",
    "SavedRun",
    "TaskState",
    "checkpoint_in",
    "init_weights",
    "load_checkpoint",
    "newest_readable",
    "resume_point",
    "run_checkpoints",
    "save_streamed",
    "save_task_state",
    "save_tracker_runs",
    "sync_folder",
    "tensor_bytes",
    "write_atomically",
]
