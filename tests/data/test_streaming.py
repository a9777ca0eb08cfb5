"""Training from shards (data=streaming): ``cvkit-data convert --to shards`` writes the real data sets as
LitData shards, and a run from them is the run from the source files: the same samples, annotations, batches,
metrics and weights, the same exact resume after kill -9, each DDP rank its own share. Bad shards are named
in one line."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cvkit.builders import build_datamodule
from cvkit.data.streaming.manifest import client_options
from cvkit.data.streaming.shards import ShardReader
from cvkit.errors import CvkitError
from cvkit.train import train
from tests.helpers.callbacks import PreemptAtBatch, RecordShard, RecordShardReads, SignalAtStep, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint, load_checkpoint
from tests.helpers.cli import assert_exit, cli_env, console_script, run_cli
from tests.helpers.configs import compose_train
from tests.helpers.presets import (
    DDP_CPU,
    RESUMABLE_DDP_DIGITS,
    RESUMABLE_DIGITS,
    short_segmentation,
    tiny_detection,
    tiny_folder_classification,
    tiny_instance_segmentation,
)
from tests.helpers.slurm import SLURM_ENV, fake_scontrol


def convert(out: Path, *data: str) -> Path:
    """`data` (overrides naming a data set) written as shards at `out` by the command a user runs."""
    assert_exit(run_cli("cvkit-data", "convert", *data, "--to", "shards", "--out", str(out), "--workers", "2"), 0)
    return out


@pytest.fixture(scope="module")
def cell_shards(bccd_cells: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("cells") / "shards", "data=imagefolder", f"data.root={bccd_cells}")


@pytest.fixture(scope="module")
def voc_shards(bccd_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("bccd") / "shards", "data=voc", f"data.root={bccd_voc}")


@pytest.fixture(scope="module")
def camvid_shards(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("camvid") / "shards", "data=camvid", f"data.root={camvid}")


def coco128_instances(coco128: Path) -> list[str]:
    """coco128 as instance segmentation data, its 128 images as both splits."""
    images, annotations = coco128 / "images" / "train2017", coco128 / "annotations" / "instances_train2017.json"
    return [
        "data=coco_instances",
        *(f"data.{split}_images={images}" for split in ("train", "val")),
        *(f"data.{split}_annotations={annotations}" for split in ("train", "val")),
    ]


@pytest.fixture(scope="module")
def coco_shards(coco128: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coco128") / "shards"
    return convert(out, "task=instance_segmentation", *coco128_instances(coco128))


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("digits") / "shards", "data=digits")


def streaming(shards: Path) -> list[str]:
    return ["data=streaming", f"data.root={shards}"]


def set_up(tmp_path: Path, *overrides: str):
    datamodule = build_datamodule(compose_train(tmp_path, *overrides))
    datamodule.setup("fit")
    return datamodule


def test_the_shards_hold_every_sample_and_label_of_the_source(cell_shards: Path, bccd_cells: Path, tmp_path) -> None:
    source = set_up(tmp_path, "data=imagefolder", f"data.root={bccd_cells}", "data.image_size=32")
    shards = set_up(tmp_path, *streaming(cell_shards), "data.image_size=32")
    assert shards.split_sizes() == source.split_sizes() == {"train": 2804, "val": 1137, "test": 945}
    assert shards.class_names == source.class_names == ["Platelets", "RBC", "WBC"]
    for split in ("train", "val", "test"):
        assert np.array_equal(shards.splits[split].labels, source.splits[split].labels)
    for split, index in (("train", 0), ("val", 500), ("test", 944)):  # the same pixels, decoded from the shards
        assert np.array_equal(shards.splits[split].images[index], source.splits[split].images[index])


def test_detection_shards_keep_every_box_and_the_coco_ground_truth(voc_shards: Path, bccd_voc: Path, tmp_path) -> None:
    source = set_up(tmp_path, "task=detection", "data=voc", f"data.root={bccd_voc}")
    shards = set_up(tmp_path, "task=detection", *streaming(voc_shards))
    assert shards.split_sizes() == source.split_sizes() == {"train": 205, "val": 87, "test": 72}
    for split in ("train", "val", "test"):
        assert shards.ground_truth(split) == source.ground_truth(split)


def test_instance_shards_keep_every_region_crowd_and_category_id(coco_shards: Path, coco128: Path, tmp_path) -> None:
    source = set_up(tmp_path, "task=instance_segmentation", *coco128_instances(coco128))
    shards = set_up(tmp_path, "task=instance_segmentation", *streaming(coco_shards))
    assert shards.split_sizes() == source.split_sizes() == {"train": 128, "val": 128}
    truth = shards.ground_truth("val")
    assert truth == source.ground_truth("val")
    assert len(truth["annotations"]) == 939 and sum(a["iscrowd"] for a in truth["annotations"]) == 10
    assert shards.label_to_category == source.label_to_category and max(shards.label_to_category) == 90
    image, target = shards.make_dataset("train", train=False)[5]
    reference_image, reference_target = source.make_dataset("train", train=False)[5]
    assert torch.equal(image, reference_image) and torch.equal(target["masks"], reference_target["masks"])


def test_segmentation_shards_keep_every_mask_and_the_ignore_value(camvid_shards: Path, camvid: Path, tmp_path) -> None:
    source = set_up(tmp_path, "task=segmentation", "data=camvid", f"data.root={camvid}")
    shards = set_up(tmp_path, "task=segmentation", *streaming(camvid_shards))
    assert shards.split_sizes() == source.split_sizes() == {"train": 367, "val": 101}
    assert (shards.class_names, shards.ignore_index) == (source.class_names, 11)
    assert np.array_equal(shards.class_pixel_counts("val"), source.class_pixel_counts("val"))


def train_both(tmp_path: Path, source: list[str], shards: list[str]) -> tuple[dict, dict]:
    """The metrics and final weights of the same run from the source files and from the shards."""
    runs = []
    for name, data in (("files", source), ("shards", shards)):
        metrics, _ = train(compose_train(tmp_path / name, *data, "logger=none", "test_after_fit=false"))
        runs.append((metrics, final_checkpoint(tmp_path / name)["state_dict"]))
    (metrics_files, weights_files), (metrics_shards, weights_shards) = runs
    assert_same_weights(weights_files, weights_shards)
    return metrics_files, metrics_shards


def test_a_classification_run_from_shards_is_the_run_from_the_files(cell_shards, bccd_cells, tmp_path) -> None:
    run = [*tiny_folder_classification(bccd_cells), "trainer.limit_train_batches=3", "data.num_workers=2"]
    files, shards = train_both(tmp_path, run, [*run, *streaming(cell_shards)])
    assert {key: value for key, value in shards.items() if key.startswith("val/")} == {
        key: value for key, value in files.items() if key.startswith("val/")
    }


def test_a_detection_run_from_shards_is_the_run_from_the_files(voc_shards: Path, bccd_voc: Path, tmp_path) -> None:
    run = [*tiny_detection(bccd_voc), "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
    files, shards = train_both(tmp_path, run, [*run, *streaming(voc_shards)])
    assert shards["val/map_50"] == files["val/map_50"] and shards["val/loss"] == files["val/loss"]


def test_an_instance_segmentation_run_from_shards_is_the_run_from_the_files(coco_shards, coco128, tmp_path) -> None:
    source, stored = (
        tiny_instance_segmentation(*data, "trainer.limit_val_batches=3")
        for data in (coco128_instances(coco128), streaming(coco_shards))
    )
    files, shards = train_both(tmp_path, source, stored)
    assert shards["val/segm_map"] == files["val/segm_map"] and shards["val/map"] == files["val/map"]


def test_a_segmentation_run_from_shards_is_the_run_from_the_files(camvid_shards, camvid: Path, tmp_path) -> None:
    run = [*short_segmentation(camvid), "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]
    files, shards = train_both(tmp_path, run, [*run, *streaming(camvid_shards)])
    assert shards["val/miou"] == files["val/miou"] and shards["val/loss"] == files["val/loss"]


# Digits from shards with digits' own pipelines: the fault tests' run (2 epochs of 6 steps, 2 loader workers).
DIGITS_PIPELINES = [
    "data.mean=[0.5,0.5,0.5]",
    "data.std=[0.5,0.5,0.5]",
    "data.train_transforms=[{_target_: albumentations.Resize, height: 16, width: 16}]",
    "data.eval_transforms=[{_target_: albumentations.Resize, height: 16, width: 16}]",
]


def train_digits(run_dir: Path, shards: Path, *overrides: str):
    return run_cli(
        "cvkit-train", *RESUMABLE_DIGITS, *streaming(shards), *DIGITS_PIPELINES, *overrides, f"hydra.run.dir={run_dir}"
    )


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGTERM"])
def test_a_run_from_shards_killed_mid_epoch_resumes_to_the_straight_runs_weights(digit_shards, tmp_path, fault):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert_exit(train_digits(straight, digit_shards), 0)
    every = "callbacks.checkpoints.every_n_train_steps=2"
    stopped = train_digits(cut, digit_shards, every, *plug(SignalAtStep, "fault", signal_name=fault, step=9))
    killed = -signal.SIGKILL if fault == "SIGKILL" else 128 + signal.SIGTERM
    assert stopped.returncode == killed, stopped.stdout[-2000:]
    assert_exit(train_digits(cut, digit_shards, every, "resume=true"), 0)  # from step 8 (kill) or 9 (SIGTERM's save)
    assert final_checkpoint(cut)["global_step"] == 12
    assert_same_weights(final_checkpoint(straight)["state_dict"], final_checkpoint(cut)["state_dict"])


def test_a_preempted_slurm_job_from_shards_requeues_and_resumes_to_the_straight_runs_weights(
    digit_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGUSR1 (SLURM's warning) after batch 2: Lightning saves hpc_ckpt_1.ckpt mid-epoch and requeues; the
    requeued job (the same command) ends with the weights of the straight run."""
    straight = tmp_path / "straight"
    assert_exit(train_digits(straight, digit_shards), 0)
    monkeypatch.setenv("PATH", f"{fake_scontrol(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SCONTROL_LOG", str(tmp_path / "scontrol.log"))
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    job = tmp_path / "job"
    preempted = [*plug(PreemptAtBatch, "preempt", batch=2), "resume=true"]
    assert train_digits(job, digit_shards, *preempted).returncode != 0  # ended by the requeue
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert load_checkpoint(job / "hpc_ckpt_1.ckpt")["global_step"] == 3
    assert_exit(train_digits(job, digit_shards, *preempted), 0)
    assert final_checkpoint(job)["global_step"] == 12
    assert_same_weights(final_checkpoint(straight)["state_dict"], final_checkpoint(job)["state_dict"], atol=1e-6)


@pytest.mark.parametrize(("fault", "step", "resumed_from"), [("SIGTERM", 2, 3), ("SIGKILL", 3, 2)])
def test_a_ddp_run_from_shards_stopped_mid_epoch_resumes_to_the_straight_runs_weights(
    digit_shards: Path, tmp_path: Path, fault: str, step: int, resumed_from: int
) -> None:
    """2 gloo ranks, 2 epochs of 4 steps, saved every 2 steps: rank 0 gets `fault` at `step` (the other rank
    ends with it), and the job resumed with resume=true ends with the straight job's weights."""

    def train_ddp(run_dir: Path, *overrides: str):
        run = [*RESUMABLE_DDP_DIGITS, *streaming(digit_shards), *DIGITS_PIPELINES, *overrides]
        return run_cli("cvkit-train", *run, "callbacks.checkpoints.every_n_train_steps=2", f"hydra.run.dir={run_dir}")

    straight, job = tmp_path / "straight", tmp_path / "job"
    assert_exit(train_ddp(straight), 0)
    stopped = train_ddp(job, *plug(SignalAtStep, "fault", signal_name=fault, step=step, rank=0))
    assert stopped.returncode != 0
    resumed = train_ddp(job, "resume=true")
    assert_exit(resumed, 0, f"saved at optimizer step {resumed_from}")
    reference, final = final_checkpoint(straight), final_checkpoint(job)
    assert final["global_step"] == reference["global_step"] == 8
    assert_same_weights(reference["state_dict"], final["state_dict"])


def test_two_ddp_ranks_read_their_own_shares_of_the_shards(digit_shards: Path, tmp_path: Path) -> None:
    """A whole epoch on 2 gloo ranks: what each rank reads from the shards is its share of the epoch's draw."""
    run = [*DDP_CPU, *streaming(digit_shards), *DIGITS_PIPELINES, "data.num_workers=0", "trainer.max_epochs=1"]
    records = [*plug(RecordShard, "shard"), *plug(RecordShardReads, "reads")]
    settings = ["trainer.limit_val_batches=1", "logger=none", f"hydra.run.dir={tmp_path}"]
    result = run_cli("cvkit-train", *run, *records, *settings)
    assert_exit(result, 0)
    shares = [json.loads((tmp_path / f"shard_rank{rank}.json").read_text()) for rank in (0, 1)]
    reads = [json.loads((tmp_path / f"shard_reads_rank{rank}.json").read_text()) for rank in (0, 1)]
    # 1437 samples, padded by wrap-around to 2 x 719 (as DistributedSampler does): one sample in both shares.
    assert len(shares[0]) == len(shares[1]) == 719
    assert len(set(shares[0]) | set(shares[1])) == 1437 and len(set(shares[0]) & set(shares[1])) == 1
    # Each rank read its share in order, 11 whole batches of 64 (its last 15 samples: the incomplete batch left out).
    assert reads[0] == shares[0][:704] and reads[1] == shares[1][:704]


def cut_copy(shards: Path, tmp_path: Path) -> Path:
    """A copy of the digit shards to break."""
    return Path(shutil.copytree(shards, tmp_path / "broken"))


def chunk(shards: Path) -> Path:
    return sorted((shards / "train").glob("*.bin"))[0]


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda shards: chunk(shards).unlink(), "is missing: copy it again"),
        (lambda shards: chunk(shards).write_bytes(chunk(shards).read_bytes()[:-100]), "it is cut short or changed"),
        (
            lambda shards: (shards / "train" / "index.json").write_text(
                json.dumps({**json.loads((shards / "train" / "index.json").read_text()), "chunks": []})
            ),
            "the index does not match its shards",
        ),
        (lambda shards: (shards / "cvkit.json").unlink(), "holds no cvkit shards"),
    ],
    ids=["missing shard", "truncated shard", "index out of step", "no manifest"],
)
def test_bad_shards_are_named_in_one_line(digit_shards: Path, tmp_path: Path, damage, said: str) -> None:
    broken = cut_copy(digit_shards, tmp_path)
    damage(broken)
    result = run_cli("cvkit-train", *streaming(broken), "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert_exit(result, 2, said, clean=True)


def test_a_shard_cut_short_or_removed_during_a_run_is_named_by_the_read(digit_shards: Path, tmp_path: Path) -> None:
    """After the checks before training: a chunk file the reader has open is cut short, then removed."""
    broken = cut_copy(digit_shards, tmp_path)
    reader = ShardReader(str(broken / "train"))
    assert reader.sample(0)["index"] == 0
    path, last = broken / "train" / reader.chunks().names[0], reader.chunks().starts[1] - 1
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CvkitError, match=rf"shard {path} ends before sample {last} \(.*\): it is cut short; copy"):
        reader.sample(last)
    path.unlink()
    with pytest.raises(CvkitError, match=f"shard {path} is missing: copy it again"):
        ShardReader(str(broken / "train")).sample(0)


def test_a_chunk_holding_other_samples_than_the_index_lists_is_named(digit_shards: Path, tmp_path: Path) -> None:
    """LitData's index moves a sample from the first chunk to the second (the same files and total, so the checks
    before training pass): the first read of the chunk compares its own header with the index."""
    broken = cut_copy(digit_shards, tmp_path)
    index = json.loads((broken / "train" / "index.json").read_text())
    index["chunks"][0]["chunk_size"] -= 1
    index["chunks"][1]["chunk_size"] += 1
    (broken / "train" / "index.json").write_text(json.dumps(index))
    held, listed = index["chunks"][0]["chunk_size"] + 1, index["chunks"][0]["chunk_size"]
    name = index["chunks"][0]["filename"]
    with pytest.raises(CvkitError, match=f"{name} holds {held} samples and index.json lists {listed}: the index"):
        ShardReader(str(broken / "train")).sample(0)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda data: b"\xff\xff\xff\xff" + data[4:], "ends before sample 0 (its header is cut short"),
        (lambda data: data[:8] + bytes(4) + data[12:], "is not a chunk LitData wrote (its table of where samples"),
    ],
    ids=["a sample count beyond the file", "offsets out of order"],
)
def test_a_chunk_with_a_broken_header_is_named(digit_shards: Path, tmp_path: Path, damage, said: str) -> None:
    """The header of the first chunk damaged in place (its size unchanged, so the checks before training pass)."""
    broken = cut_copy(digit_shards, tmp_path)
    reader = ShardReader(str(broken / "train"))
    path = broken / "train" / reader.chunks().names[0]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CvkitError, match=re.escape(f"shard {path} {said}")):
        reader.sample(0)


def test_shards_of_another_task_are_refused(digit_shards: Path, tmp_path: Path) -> None:
    result = run_cli("cvkit-train", "task=detection", *streaming(digit_shards), f"hydra.run.dir={tmp_path}")
    assert_exit(result, 2, "hold classification data, and this run is detection: run it with task=classification")


def test_unreachable_object_storage_is_named_without_hanging(tmp_path: Path) -> None:
    result = run_cli(
        "cvkit-train",
        "data=streaming",
        "data.root=s3://cvkit-test/shards",
        "data.storage_options={endpoint_url: 'http://127.0.0.1:9', aws_access_key_id: x, aws_secret_access_key: y}",
        f"hydra.run.dir={tmp_path}",
        timeout=120,
    )
    assert_exit(result, 2, "cannot read s3://cvkit-test/shards/cvkit.json", clean=True)


def test_a_conversion_killed_mid_split_is_finished_by_the_same_command(digit_shards: Path, tmp_path: Path) -> None:
    """kill -9 while the train split is being written (small chunks, one writer); the same command then finishes
    it from LitData's checkpoint: every sample in its place, the manifest the uninterrupted one's. Finished
    shards are not written over."""
    out = tmp_path / "shards"
    command = [console_script("cvkit-data"), "convert", "data=digits", "--to", "shards", "--out", str(out)]
    command += ["--workers", "1", "--chunk-bytes", "32KB"]
    writing = subprocess.Popen(command, env=cli_env(), stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((out / "train").glob("*.bin"))) < 3 and writing.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(writing.pid, signal.SIGKILL)
    writing.wait()
    assert not (out / "cvkit.json").exists() and list((out / "train" / ".checkpoints").glob("checkpoint-*.json"))
    assert_exit(run_cli("cvkit-data", *command[1:]), 0)
    manifest, reference = (json.loads((folder / "cvkit.json").read_text()) for folder in (out, digit_shards))
    for split in ("train", "val"):
        assert manifest["splits"][split]["samples"] == reference["splits"][split]["samples"]
        reader = ShardReader(str(out / split))
        assert all(reader.sample(i)["index"] == i for i in range(len(manifest["splits"][split]["samples"])))
    assert_exit(run_cli("cvkit-data", *command[1:]), 2, "already holds finished shards", clean=True)


@pytest.fixture(scope="module")
def s3_server():
    """A local S3-compatible server (moto), its address and a client of it."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    client = boto3.client("s3", region_name="us-east-1", **options)
    client.create_bucket(Bucket="cvkit")
    yield options, client
    server.stop()


def upload(client, shards: Path, prefix: str) -> str:
    for path in shards.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "cvkit", f"{prefix}/{path.relative_to(shards)}")
    return f"s3://cvkit/{prefix}"


def remote(url: str, options: dict, cache: Path) -> list[str]:
    settings = ", ".join(f"{key}: '{value}'" for key, value in options.items())
    return ["data=streaming", f"data.root={url}", f"data.storage_options={{{settings}}}", f"data.cache_dir={cache}"]


def test_a_run_from_shards_in_object_storage_is_the_run_from_local_shards(digit_shards, s3_server, tmp_path) -> None:
    options, client = s3_server
    url = upload(client, digit_shards, "digits")
    run = [*RESUMABLE_DIGITS, *DIGITS_PIPELINES, "trainer.max_epochs=1"]
    for name, data in (("local", streaming(digit_shards)), ("s3", remote(url, options, tmp_path / "cache"))):
        assert_exit(run_cli("cvkit-train", *run, *data, f"hydra.run.dir={tmp_path / name}"), 0)
    assert_same_weights(
        final_checkpoint(tmp_path / "local")["state_dict"], final_checkpoint(tmp_path / "s3")["state_dict"]
    )
    cached = {path: path.stat().st_ino for path in (tmp_path / "cache").rglob("*.bin")}
    assert sorted(path.name for path in cached) == sorted(path.name for path in digit_shards.rglob("*.bin"))
    # A second run reads the node's cache: no chunk is fetched again (a fetch writes a new file).
    warm = [*remote(url, options, tmp_path / "cache"), f"hydra.run.dir={tmp_path / 'again'}"]
    again = run_cli("cvkit-train", *run, *warm)
    assert_exit(again, 0)
    assert {path: path.stat().st_ino for path in (tmp_path / "cache").rglob("*.bin")} == cached


@pytest.mark.parametrize("bounded", [False, True])
def test_a_chunk_removed_from_the_nodes_cache_is_fetched_again(digit_shards, s3_server, tmp_path, bounded) -> None:
    """A chunk this process has read from is removed from the cache (another process made room, or a user
    cleared it) after its file was closed: the next read of it fetches it again and reads the same sample. A
    bounded cache finds it gone before opening it; an unbounded one, which trusts a chunk it has seen, when
    opening it fails."""
    options, client = s3_server
    url = upload(client, digit_shards, f"refetch{bounded}")
    manifest = json.loads((digit_shards / "cvkit.json").read_text())
    sizes = manifest["splits"]["train"]["files"]
    cache = tmp_path / "cache"
    limit = sum(sizes.values()) if bounded else None
    reader = ShardReader(f"{url}/train", str(cache), client_options(url, options), sizes, manifest["written"], limit)
    assert reader.sample(0)["index"] == 0
    chunks = reader.chunks()
    for file in chunks.open.values():  # as the least recently used files are closed
        file.close()
    chunks.open.clear()
    (cached,) = cache.rglob(chunks.names[0])
    cached.unlink()
    local = ShardReader(str(digit_shards / "train")).sample(1)
    again = reader.sample(1)
    assert again["index"] == 1 and np.array_equal(again["image"], local["image"]) and cached.is_file()


def test_requests_to_s3_are_tried_three_times_with_timeouts() -> None:
    """LitData's S3 client retries 1000 times unless given a config: cvkit gives its own, unless the user did."""
    config = client_options("s3://bucket/shards", {"endpoint_url": "http://minio:9000"})["config"]
    assert config.retries == {"max_attempts": 3, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (20, 60)
    assert client_options("s3://bucket/shards", {"config": "the user's"})["config"] == "the user's"
    assert "config" not in client_options("gs://bucket/shards", {})


def test_a_shard_cut_short_in_object_storage_is_named(digit_shards: Path, s3_server, tmp_path: Path) -> None:
    options, client = s3_server
    broken = cut_copy(digit_shards, tmp_path)
    chunk(broken).write_bytes(chunk(broken).read_bytes()[:-100])
    url = upload(client, broken, "cut")
    result = run_cli(
        "cvkit-train",
        *remote(url, options, tmp_path / "cache"),
        "data.num_workers=2",  # the error comes from a loader worker: still one line
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_exit(result, 2, f"shard {url}/train/{chunk(broken).name} has", "it is cut short or changed", clean=True)


@pytest.fixture(scope="module")
def small_chunk_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits as shards of 32 KB chunks (about 7 for the training split), one writer."""
    out = tmp_path_factory.mktemp("digits_small_chunks") / "shards"
    convert_args = ["convert", "data=digits", "--to", "shards", "--out", str(out), "--workers", "1"]
    assert_exit(run_cli("cvkit-data", *convert_args, "--chunk-bytes", "32KB"), 0)
    return out


def test_a_full_cache_makes_room_and_the_run_stays_exact(small_chunk_shards, digit_shards, s3_server, tmp_path) -> None:
    """A cache of 3 chunks for a split of about 7: chunks are removed to make room (least recently used first)
    and fetched again, the cache never holds more than its size, and the run equals the one from local shards
    (the same samples, in other chunks)."""
    options, client = s3_server
    chunk_sizes = [path.stat().st_size for path in (small_chunk_shards / "train").glob("*.bin")]
    assert len(chunk_sizes) >= 5
    limit = 3 * max(chunk_sizes)
    url = upload(client, small_chunk_shards, "digits-small-chunks")
    run = [*RESUMABLE_DIGITS, *DIGITS_PIPELINES, "trainer.max_epochs=1"]
    cache = tmp_path / "cache"
    bounded = [*remote(url, options, cache), f"data.cache_size={limit}"]
    for name, data in (("local", streaming(digit_shards)), ("s3", bounded)):
        assert_exit(run_cli("cvkit-train", *run, *data, f"hydra.run.dir={tmp_path / name}"), 0)
    assert_same_weights(
        final_checkpoint(tmp_path / "local")["state_dict"], final_checkpoint(tmp_path / "s3")["state_dict"]
    )
    chunks_of = {folder: len(json.loads((folder / "index.json").read_text())["chunks"]) for folder in cache.iterdir()}
    train_cache = max(chunks_of, key=chunks_of.get)
    kept = list(train_cache.glob("*.bin"))
    assert 0 < len(kept) < len(chunk_sizes) and sum(path.stat().st_size for path in kept) <= limit


@pytest.mark.parametrize(
    ("size", "said"),
    [("lots", "data.cache_size='lots' is not a size"), ("1000", "cannot hold the largest chunk")],
)
def test_a_cache_size_that_cannot_work_is_refused(digit_shards: Path, s3_server, tmp_path: Path, size, said) -> None:
    options, client = s3_server
    url = upload(client, digit_shards, "digits-for-sizes")
    overrides = [*remote(url, options, tmp_path / "cache"), f"data.cache_size={size}", "data.num_workers=2"]
    result = run_cli("cvkit-train", *overrides, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert_exit(result, 2, said, clean=True)


def test_cvkit_data_refuses_shards_as_its_source(digit_shards: Path, tmp_path: Path) -> None:
    result = run_cli("cvkit-data", "check", "task=detection", *streaming(digit_shards))
    assert_exit(result, 2, "cvkit-data reads the files a dataset was made of, and data=streaming", clean=True)
