import subprocess
import sys
from pathlib import Path

from tests.helpers.datasets import make_folder

HOLDS_ITS_LOADER = """
import sys
from cvkit.data import ImageFolderDataModule

RESIZE = [{"_target_": "albumentations.Resize", "height": 16, "width": 16}]
module = ImageFolderDataModule(root=sys.argv[1], batch_size=2, num_workers=1, image_size=16, mean=[0.5] * 3,
                               std=[0.5] * 3, train_transforms=RESIZE, eval_transforms=RESIZE)
loader = module.train_dataloader()  # held until Python exits, as by a script or a notebook
images, labels = next(iter(loader))
worker = next(iter(loader._iterator._workers))
print(worker.pid, flush=True)
"""


def test_a_script_holding_a_loader_exits_and_its_workers_with_it(bccd_cells: Path, tmp_path: Path) -> None:
    """The workers ignore SIGTERM (they leave stopping to the main process), so Python's own way of ending
    child processes at exit cannot end them: cvkit shuts them down, and the script exits."""
    root = make_folder(bccd_cells, tmp_path / "folder", per_class=2)
    script = tmp_path / "holds_its_loader.py"
    script.write_text(HOLDS_ITS_LOADER)
    process = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    worker_pid = int(output)
    assert process.returncode == 0
    assert not Path(f"/proc/{worker_pid}").exists() or _is_zombie(worker_pid)


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
