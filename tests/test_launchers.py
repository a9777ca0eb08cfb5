"""The launchers of multi-process jobs, on one machine with CPU processes: torchrun with two "nodes" and
srun's environment for two tasks. Each starts the same cvkit-train command once per process, as on a
cluster; Lightning takes ranks and addresses from the launcher, and the run has one run dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.checkpoints import final_checkpoint
from tests.helpers.cli import cli_env, console_script
from tests.helpers.logs import read_summary
from tests.helpers.network import free_port
from tests.helpers.paths import REPO
from tests.helpers.presets import DDP_CPU, SHORT_DIGITS

# One process per launched task (trainer.devices=1 each): 1 epoch of 3 steps.
RUN = [*DDP_CPU, "trainer.devices=1", *SHORT_DIGITS, "trainer.max_epochs=1", "trainer.limit_train_batches=3"]


def run_together(commands: list[list[str]], envs: list[dict[str, str]], timeout: float = 900) -> None:
    """Start every command at once (as a launcher starts its processes); each must succeed."""
    processes = [
        subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command, env in zip(commands, envs)
    ]
    outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]


def check_one_run_of_world_size_2(run_dir: Path) -> None:
    summary = read_summary(run_dir)
    assert (summary["world_size"], summary["num_nodes"] * summary["devices"]) == (2, 2)
    assert summary["global_batch_size"] == 2 * summary["per_device_batch_size"]
    assert final_checkpoint(run_dir)["global_step"] == 3
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [run_dir.name]  # no folder per process
    assert (run_dir / "train.log").is_file() and (run_dir / "train_rank1.log").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # written by rank 0 only


def test_torchrun_with_two_nodes_trains_one_run(tmp_path: Path) -> None:
    run_dir, port = tmp_path / "run", free_port()
    commands = [
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
            console_script("cvkit-train"), *RUN, "trainer.num_nodes=2", f"hydra.run.dir={run_dir}",
        ]
        for node in (0, 1)
    ]  # fmt: skip
    run_together(commands, [cli_env(), cli_env()])
    check_one_run_of_world_size_2(run_dir)


def test_srun_tasks_train_one_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    slurm = {
        "SLURM_JOB_ID": "777",
        "SLURM_JOB_NAME": "cvkit-test",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_NODEID": "0",
        "MASTER_PORT": str(free_port()),
    }
    envs = [{**cli_env(), **slurm, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task)} for task in (0, 1)]
    command = [console_script("cvkit-train"), *RUN, "trainer.devices=2", f"hydra.run.dir={run_dir}"]
    run_together([command, command], envs)
    check_one_run_of_world_size_2(run_dir)
