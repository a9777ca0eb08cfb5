"""logger=mlflow against a real MLflow server on localhost, and logger=wandb offline: one tracker run per job
(DDP included), a resumed job continuing its tracker run, the config, summary and best checkpoint logged."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import train_into
from tests.helpers.logs import read_report, read_summary
from tests.helpers.presets import CHECKPOINTED_DIGITS, DDP_CPU
from tests.helpers.wandb_files import offline_run

pytest.importorskip("mlflow", reason="the trackers extra is not installed: pip install -e '.[trackers]'")
pytest.importorskip("wandb", reason="the trackers extra is not installed: pip install -e '.[trackers]'")
from mlflow.tracking import MlflowClient

# One epoch of 4 steps on 16 px digits, with a checkpoint to resume from.
ONE_EPOCH = [*CHECKPOINTED_DIGITS, "trainer.max_epochs=1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on localhost (SQLite store, local artifacts); its URI."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
        "--workers", "1",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("w"))
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_an_mlflow_run_is_logged_and_continued_by_its_resume(mlflow_server: str, tmp_path: Path) -> None:
    tracker = ["logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_server}", "logger.mlflow.experiment_name=resume"]
    train_into(tmp_path, *ONE_EPOCH, *tracker)
    (run,) = runs_of(mlflow_server, "resume")
    client = MlflowClient(mlflow_server)
    assert run.info.status == "FINISHED"
    assert run.data.params["data/batch_size"] == "32" and run.data.params["optimizer/lr"] == "0.1"
    assert run.data.tags["best_checkpoint"] == read_report(tmp_path)["best_checkpoint"]
    assert run.data.tags["run_dir"] == str(tmp_path)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "summary.json", "metrics.json"}
    summary = json.loads(Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))).read_text())
    assert summary["effective_lr"] == read_summary(tmp_path)["effective_lr"]
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 1

    last = tmp_path / "checkpoints" / "last.ckpt"
    train_into(tmp_path, *ONE_EPOCH, *tracker, "trainer.max_epochs=2", f"ckpt_path={last}")
    (resumed,) = runs_of(mlflow_server, "resume")  # the same run, not a second one
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [point.step for point in history] == [3, 7]  # epoch 1's validation, then epoch 2's


def test_a_ddp_job_is_one_mlflow_run(mlflow_server: str, tmp_path: Path) -> None:
    tracker = ["logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_server}", "logger.mlflow.experiment_name=ddp"]
    train_into(tmp_path, *DDP_CPU, *ONE_EPOCH, *tracker)
    (run,) = runs_of(mlflow_server, "ddp")
    assert run.info.status == "FINISHED" and run.data.params["trainer/devices"] == "2"


def test_a_wandb_offline_run_is_continued_by_its_resume(tmp_path: Path) -> None:
    train_into(tmp_path, *ONE_EPOCH, "logger=wandb")
    (first,) = offline_run(tmp_path)["runs"]
    assert {"data", "optimizer", "trainer"} <= first["config"]
    assert json.loads(first["summary"]["best_checkpoint"]) == read_report(tmp_path)["best_checkpoint"]
    assert json.loads(first["summary"]["run_summary"])["effective_lr"] == read_summary(tmp_path)["effective_lr"]
    assert {"val/acc", "train/loss_epoch", "lr"} <= first["history"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    train_into(tmp_path, *ONE_EPOCH, "logger=wandb", "trainer.max_epochs=2", f"ckpt_path={last}")
    _, second = offline_run(tmp_path)["runs"]
    assert second["id"] == first["id"]  # `wandb sync` appends it to the same run
