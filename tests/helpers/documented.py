"""The cvkit commands written in the README and docs/, read as a shell would split them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep

from tests.helpers.paths import REPO

DOCUMENTS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
PROGRAM = re.compile(r"(?:\.venv/bin/)?(cvkit-(?:train|eval|predict|export|data))")
FENCE = re.compile(r"^\s*```(\w*)")
SHELLS = {"bash", "sh", "shell", "console"}
INLINE = re.compile(r"`((?:\.venv/bin/)?cvkit-(?:train|eval|predict|export|data) [^`]*)`")
SLURM_SCRIPT = "scripts/slurm/train.sbatch"
PLACEHOLDER = "..."  # "your other overrides" in a command written for the reader


@dataclass(frozen=True)
class DocumentedCommand:
    """One cvkit command as a document shows it: where, the program, its arguments and what ran it (torchrun, srun)."""

    where: str
    program: str
    args: tuple[str, ...]
    launcher: str | None
    fenced: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {shlex.join(self.args)}"


def _command(where: str, line: str, fenced: bool) -> DocumentedCommand | None:
    """The cvkit command on a (joined) shell line, or None when it runs none."""
    words = shlex.split(line, comments=True)
    if SLURM_SCRIPT in words:  # its overrides go to the script's `srun cvkit-train trainer=ddp ...`
        args = ("trainer=ddp", *words[words.index(SLURM_SCRIPT) + 1 :])
        return DocumentedCommand(where, "cvkit-train", args, "sbatch", fenced)
    for index, word in enumerate(words):
        match = PROGRAM.fullmatch(word)
        if match:
            launcher = words[0] if index else None
            args = tuple(arg for arg in words[index + 1 :] if arg != PLACEHOLDER)
            return DocumentedCommand(where, match.group(1), args, launcher, fenced)
    return None


def commands_in(path: Path) -> list[DocumentedCommand]:
    """Every cvkit command in `path`: the lines of its shell code blocks (continuation lines joined), and the
    inline code spans that give a command with arguments."""
    name = path.relative_to(REPO).as_posix()
    found: list[DocumentedCommand] = []
    fenced, shell, pending, start = False, False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if fence:
            fenced, shell = not fenced, not fenced and fence.group(1) in SHELLS
            continue
        if fenced and not shell:
            continue
        if fenced:
            start = start or number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = _command(f"{name}:{start}", pending + line, fenced=True)
            pending, start = "", 0
        else:
            spans = [_command(f"{name}:{number}", span, fenced=False) for span in INLINE.findall(line)]
            found.extend(span for span in spans if span and any("=" in arg for arg in span.args))
            continue
        if command:
            found.append(command)
    return found


def documented_commands() -> list[DocumentedCommand]:
    return [command for path in DOCUMENTS for command in commands_in(path)]


def one_point_of_each_sweep(overrides: tuple[str, ...]) -> list[str]:
    """`overrides` with every sweep (``a=1,2``, ``choice(...)``, ``range(...)``, ``interval(...)``) replaced by one
    of its points, so that one job of a ``-m`` command can be composed."""
    parser = OverridesParser.create()
    single = []
    for text in overrides:
        if text.startswith("-") or "=" not in text:
            single.append(text)
            continue
        override = parser.parse_override(text)
        if not override.is_sweep_override():
            single.append(text)
            continue
        value = override.value()
        point = value.start if isinstance(value, IntervalSweep) else next(override.sweep_string_iterator())
        single.append(f"{override.get_key_element()}={point}")
    return single


def split_alternatives(args: tuple[str, ...]) -> tuple[str, ...]:
    """``format=onnx|torchscript`` as a reader takes it: its first alternative."""
    return tuple(arg.split("|")[0] if "=" in arg and "|" in arg else arg for arg in args)
