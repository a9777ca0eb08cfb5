"""Data-parallel training with 2 CPU processes (gloo): one run dir, sharded data, the LR rule, resume."""

import json
from pathlib import Path

import pytest

from cvkit.errors import CvkitError
from tests.helpers.callbacks import RecordShard, plug
from tests.helpers.checkpoints import final_checkpoint
from tests.helpers.cli import assert_exit, run_cli, train_into
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_report, read_summary
from tests.helpers.presets import DDP_CPU, SHORT_DIGITS


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    shards = plug(RecordShard, "shard")
    train_into(run_dir, *DDP_CPU, *SHORT_DIGITS, "trainer.max_epochs=1", "trainer.limit_train_batches=4", *shards)
    return run_dir


def test_two_processes_write_one_run_dir(ddp_run: Path) -> None:
    assert sorted(p.name for p in ddp_run.parent.iterdir()) == ["run"]
    assert (ddp_run / "metrics.json").is_file() and (ddp_run / "checkpoints" / "last.ckpt").is_file()
    assert read_summary(ddp_run)["world_size"] == 2


def test_the_val_images_of_both_ranks_are_counted(ddp_run: Path) -> None:
    counted = read_report(ddp_run)["val_images"]
    assert counted == {"scored": 2 * 2 * 64, "total": 360, "unreadable": []}  # 2 val batches of 64 on each rank


def test_each_rank_sees_its_own_shard_but_for_one_padding_sample(ddp_run: Path) -> None:
    shards = [json.loads((ddp_run / f"shard_rank{rank}.json").read_text()) for rank in (0, 1)]
    # digits' 1437 training images, padded by wrap-around to 2 x 719 as DistributedSampler does: the padding
    # repeats the epoch's first sample (rank 0's first) as the last sample of rank 1, the only one shared.
    assert len(shards[0]) == len(shards[1]) == 719
    assert set(shards[0]) & set(shards[1]) == {shards[0][0]} and shards[1][-1] == shards[0][0]
    assert len(set(shards[0]) | set(shards[1])) == 1437


def test_two_processes_and_two_accumulation_steps_scale_the_lr_alike(ddp_run: Path, tmp_path: Path) -> None:
    accumulated = compose_train(tmp_path, *SHORT_DIGITS, "trainer.accumulate_grad_batches=2")
    from cvkit.builders import build_trainer, build_training_plan

    plan = build_training_plan(accumulated, build_trainer(accumulated), per_device_batch_size=64).lr
    ddp = read_summary(ddp_run)
    assert ddp["global_batch_size"] == plan.global_batch_size == 128
    assert ddp["effective_lr"] == pytest.approx(plan.effective_lr) == pytest.approx(0.1 * 128 / 256)


def test_a_ddp_run_resumes_from_its_checkpoint(ddp_run: Path) -> None:
    train_into(ddp_run, *DDP_CPU, *SHORT_DIGITS, "trainer.max_epochs=2", "trainer.limit_train_batches=4", "resume=true")
    checkpoint = final_checkpoint(ddp_run)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 8
    assert read_summary(ddp_run)["resumed_from"].endswith("last.ckpt")


def test_multi_node_without_a_launcher_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "NODE_RANK"):
        monkeypatch.delenv(variable, raising=False)
    from cvkit.builders import build_trainer

    with pytest.raises(CvkitError, match="trainer.num_nodes=2 but no launcher started this process"):
        build_trainer(compose_train(tmp_path, "trainer.num_nodes=2"))


def test_a_sweep_of_ddp_jobs_keeps_each_job_in_its_folder(tmp_path: Path) -> None:
    result = run_cli(
        "cvkit-train",
        "-m",
        *DDP_CPU,
        *SHORT_DIGITS,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "optimizer.lr=0.05,0.2",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert_exit(result, 0)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["0", "1", "multirun.yaml"]
    for job, lr in (("0", 0.05), ("1", 0.2)):
        job_summary = read_summary(tmp_path / job)
        assert (job_summary["world_size"], job_summary["base_lr"]) == (2, lr)
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
        assert (tmp_path / job / "train_rank1.log").is_file()  # rank 1 ran in its job's own folder


def test_child_processes_keep_hydra_config_location_flags() -> None:
    from cvkit.distributed import config_flags

    argv = ["--config-dir", "my_configs", "-cn=train", "data.root=x", "--multirun", "a=1,2"]
    assert config_flags(argv) == ["--config-dir", "my_configs", "-cn=train"]
