"""``cvkit-data``: check a detection or instance segmentation dataset before training, convert it between
COCO, VOC and YOLO, or write any task's dataset as shards for ``data=streaming`` (docs/streaming.md).

The dataset is named with the overrides a training run takes (``data=voc data.root=...``), composed from the
same configs and read by the same data module, so that what is checked is what training will read::

    cvkit-data check data=voc data.root=../shared/data/BCCD --json bccd_report.json
    cvkit-data convert data=voc data.root=../shared/data/BCCD --to yolo --out bccd_yolo
    cvkit-data convert data=yolo_seg data.dataset=cells/data.yaml --to coco --out cells_coco
    cvkit-data convert data=imagefolder data.root=../shared/data/bccd_cells --to shards --out cells_shards

``check`` exits with 0 when it finds no problem and 1 when it does; bad input (a config error, a missing
folder) exits with 2, as the other commands do. More in docs/detection.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cvkit.errors import CvkitError, message_of

log = logging.getLogger("cvkit")
SHOWN_PER_PROBLEM = 10


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    description = __doc__.replace("``", "").replace("::", ":")  # the docstring, its reST markup aside
    parser = argparse.ArgumentParser(
        prog="cvkit-data", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="decode every image, check every box and mask, count classes and sizes")
    check.add_argument("--json", type=Path, help="also write the report to this JSON file")
    check.add_argument("--workers", type=int, default=4, help="threads decoding images (default 4)")
    convert = commands.add_parser("convert", help="write the dataset in another layout, images included")
    convert.add_argument(
        "--to", required=True, choices=["coco", "voc", "yolo", "shards"], help="the layout to write (shards: any task)"
    )
    convert.add_argument("--out", required=True, type=Path, help="a new folder to write it in")
    convert.add_argument("--symlink", action="store_true", help="link the images instead of copying them")
    convert.add_argument("--workers", type=int, default=4, help="shards: processes writing them (default 4)")
    convert.add_argument("--chunk-bytes", default="64MB", help="shards: the size of each chunk file (default 64MB)")
    for command in (check, convert):
        command.add_argument("overrides", nargs="*", help="the data config, as for cvkit-train: data=voc data.root=…")
    return parser.parse_args(argv)


def load_datamodule(overrides: list[str], any_task: bool = False) -> Any:
    """The set-up data module that ``cvkit-train`` would train on with `overrides`: a detection (or instance
    segmentation) one unless `any_task`."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import MissingMandatoryValue

    from cvkit.builders import data_configs_for, instantiate_at
    from cvkit.data.detection import DetectionDataModule
    from cvkit.data.instances import InstanceSegmentationDataModule
    from cvkit.data.streaming.module import StreamingFromShards

    try:
        with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
            cfg = compose(config_name="train", overrides=["task=detection", *overrides])
        datamodule = instantiate_at("data", cfg.data, _recursive_=False)
    except MissingMandatoryValue as err:
        raise CvkitError(f"{err.full_key} has no value: set it, e.g. {err.full_key}=...") from err
    except HydraException as err:
        raise CvkitError(f"the overrides {overrides} do not compose: {err}") from err
    if isinstance(datamodule, StreamingFromShards):
        raise CvkitError(
            f"cvkit-data reads the files a dataset was made of, and data=streaming ({datamodule.place.root}) is "
            "shards: name the data they were written from (data=voc data.root=..., ...)"
        )
    if not any_task and not isinstance(datamodule, DetectionDataModule):
        instances = data_configs_for(InstanceSegmentationDataModule)
        boxes = [name for name in data_configs_for(DetectionDataModule) if name not in instances]
        raise CvkitError(
            f"cvkit-data reads detection data, and data ({type(datamodule).__name__}) is not: choose "
            f"data={'|'.join(boxes)}, or data={'|'.join(instances)} for instance segmentation"
        )
    datamodule.setup("fit")
    return datamodule


def progress_bar(items: Iterable[Any], total: int) -> Iterable[Any]:
    from rich.progress import track

    return track(items, total=total, description="decoding images", transient=True)


def print_report(report: Any) -> None:
    """The report's tables (splits, classes, image sizes) and its problems, each with its first files."""
    from rich.table import Table

    from cvkit.console import console
    from cvkit.data.detection.check import PROBLEMS

    splits = Table(title=f"{report.dataset}", title_justify="left")
    fields = ("images", "objects", "images_without_objects", "crowd_or_difficult")
    for column in ("split", *(name.replace("_", " ") for name in fields), "objects S/M/L"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for name, split in report.splits.items():
        sizes = "/".join(str(count) for count in split.objects_by_size.values())
        splits.add_row(name, *(str(getattr(split, key)) for key in fields), sizes)
    console.print(splits)
    classes = Table(title="objects per class", title_justify="left")
    for column in ("class", *report.splits):
        classes.add_column(column, justify="left" if column == "class" else "right")
    for name in report.class_names:
        classes.add_row(name, *(str(split.objects_per_class[name]) for split in report.splits.values()))
    console.print(classes)
    for name, split in report.splits.items():
        common = ", ".join(f"{size} ({count})" for size, count in list(split.image_sizes.items())[:5])
        more = f", and {len(split.image_sizes) - 5} other sizes" if len(split.image_sizes) > 5 else ""
        console.print(f"{name} image sizes: {common}{more}", markup=False)
    for key, found in report.problems.items():
        if found:
            console.print(f"[bold red]{len(found)} {PROBLEMS[key]}[/]")
            for line in found[:SHOWN_PER_PROBLEM]:
                console.print(f"  {line}", markup=False)
            if len(found) > SHOWN_PER_PROBLEM:
                console.print(f"  ... and {len(found) - SHOWN_PER_PROBLEM} more", markup=False)
    console.print("no problems found" if report.ok else "problems found: fix them, or see what training does with them")


def run(arguments: argparse.Namespace) -> int:
    to_shards = arguments.command == "convert" and arguments.to == "shards"
    datamodule = load_datamodule(arguments.overrides, any_task=to_shards)
    if arguments.command == "check":
        from cvkit.console import write_json
        from cvkit.data.detection.check import check_dataset

        report = check_dataset(datamodule, arguments.workers, progress_bar)
        print_report(report)
        if arguments.json:
            write_json(arguments.json, report.as_dict())
        return 0 if report.ok else 1
    if arguments.to == "shards":
        from cvkit.data.streaming.convert import convert_to_shards

        counts = convert_to_shards(datamodule, arguments.out, arguments.workers, arguments.chunk_bytes)
        written = ", ".join(f"{split} {count}" for split, count in counts.items())
        log.info(
            "wrote %s as shards at %s (samples: %s): train from them with data=streaming data.root=%s",
            datamodule.describe(),
            arguments.out,
            written,
            arguments.out,
        )
        return 0
    from cvkit.data.detection.convert import convert

    for note in convert(datamodule, arguments.to, arguments.out, arguments.symlink):
        log.warning("%s", note)
    log.info("wrote %s as %s at %s", datamodule.describe(), arguments.to, arguments.out)
    return 0


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    logging.getLogger("litdata").setLevel(logging.WARNING)  # its cache-size notes are about reading, not writing
    try:
        sys.exit(run(parse_arguments(sys.argv[1:] if argv is None else argv)))
    except CvkitError as err:
        log.error("cvkit: %s", message_of(err))
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
