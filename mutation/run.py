"""`make mutation`: mutmut over each module of ``mutation/targets.py`` against its own tests, then
one summary table (module, mutants, killed, survived, equivalent, score).

Why each module runs in a prepared copy. mutmut 3 copies the source into ``mutants/`` and names
each mutant after its file's path (``logging/validation.py`` gives ``logging.validation.*``), but
it learns which tests reach a function from the module name the running code reports
(``proplog.validation.*``). The propensity log is installed as ``proplog`` from ``logging/``
through setuptools' package-dir mapping, so in the repository the two names differ, every
mutant of the log would be reported as "no tests", and a ``logging/`` folder that mutmut puts on
``sys.path`` would shadow the standard library. So each module is mutated in its own copy,
``mutation/work/<module>/``, where every package sits in the folder it imports as (``logging/``
is copied to ``proplog/``, the same namespace package the install makes). mutmut runs there and
writes only there; the working tree is never touched, and the copy is rebuilt on every run.

Score = killed / (mutants − equivalent). A timeout counts as killed; "no tests" (a mutant that
no selected test reaches) counts as survived. ``mutation/equivalent.txt`` lists the survivors
that no test can kill, one per line with its reason; they are left out of the score.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from targets import TARGETS, Target

log = logging.getLogger("mutation")

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
EQUIVALENT = HERE / "equivalent.txt"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-wal", "*.db-shm")


@dataclass(frozen=True)
class Row:
    module: str
    mutants: int
    killed: int
    survived: int
    equivalent: int
    seconds: float

    @property
    def score(self) -> float:
        scored = self.mutants - self.equivalent
        return self.killed / scored if scored else 1.0


def package_folders() -> dict[str, Path]:
    """Import name -> source folder, from pyproject.toml (``proplog`` -> ``logging/``)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    mapping = setuptools.get("package-dir", {})
    return {name: REPO / mapping.get(name, name) for name in setuptools["packages"]}


def prepare_copy(target: Target, folder: Path) -> None:
    """The repository as it imports, in ``folder``, with mutmut's configuration for ``target``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    packages = package_folders()
    for name, source in packages.items():
        shutil.copytree(source, folder / name, ignore=IGNORE)
    shutil.copytree(REPO / "tests", folder / "tests", ignore=IGNORE)
    shutil.copy2(REPO / "pyproject.toml", folder / "pyproject.toml")
    lines = [
        "[mutmut]",
        "source_paths =",
        *(f"    {name}" for name in packages),
        f"only_mutate = {target.source}",
        "pytest_add_cli_args =",
        *(f"    {arg}" for arg in ("-p", "no:cacheprovider", *target.pytest_args)),
        "pytest_add_cli_args_test_selection =",
        *(f"    {test}" for test in target.tests),
    ]
    (folder / "setup.cfg").write_text("\n".join(lines) + "\n")


def equivalent_mutants() -> dict[str, str]:
    """Mutant name -> why no test can kill it, from ``mutation/equivalent.txt``."""
    out: dict[str, str] = {}
    for line in EQUIVALENT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def statuses(folder: Path, target: Target) -> dict[str, str]:
    """Mutant name -> mutmut's status (killed, survived, no tests, timeout, ...)."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((folder / "mutants" / f"{target.source}.meta").read_text())
    return {
        name: status_by_exit_code[code]
        for name, code in meta["exit_code_by_key"].items()
        if not target.patterns or any(fnmatch.fnmatch(name, p) for p in target.patterns)
    }


def write_survivors(folder: Path, target: Target, survivors: dict[str, str]) -> None:
    """Each survivor's diff into ``survivors.txt``, for the next person to read."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(folder)  # mutmut reads its mutants/ folder relative to the working directory
    try:
        diffs = [
            f"## {name} ({status})\n{get_diff_for_mutant(name, path=target.source)}\n"
            for name, status in survivors.items()
        ]
    finally:
        os.chdir(here)
    (folder / "survivors.txt").write_text("\n".join(diffs))


def run_target(target: Target, mutmut: Path, equivalent: dict[str, str]) -> Row:
    folder = WORK / target.source.replace("/", "_").removesuffix(".py")
    prepare_copy(target, folder)
    log.info("mutating %s against %s", target.name, ", ".join(target.tests))
    start = time.monotonic()
    with open(folder / "mutmut.log", "w") as out:
        done = subprocess.run(
            [str(mutmut), "run", "--max-children", "1", *target.patterns],
            cwd=folder,
            stdout=out,
            stderr=out,
        )
    if done.returncode != 0:
        raise RuntimeError(f"mutmut failed on {target.name}; see {folder / 'mutmut.log'}")
    seconds = time.monotonic() - start
    status = statuses(folder, target)
    killed = sum(s in ("killed", "timeout") for s in status.values())
    survivors = sorted(n for n, s in status.items() if s not in ("killed", "timeout"))
    real = [n for n in survivors if n not in equivalent]
    module = target.source.removesuffix(".py").replace("/", ".") + "."
    stale = [n for n in equivalent if n.startswith(module) and n not in survivors]
    if stale:  # killed now, or renumbered after an edit of the module: the list needs a look
        log.warning("%s: listed as equivalent but not surviving: %s", target.name, ", ".join(stale))
    write_survivors(folder, target, {name: status[name] for name in real})
    if real:
        log.info("%s: %d survivors, diffs in %s", target.name, len(real), folder / "survivors.txt")
    return Row(
        module=target.name,
        mutants=len(status),
        killed=killed,
        survived=len(real),
        equivalent=len(survivors) - len(real),
        seconds=seconds,
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| module | mutants | killed | survived | equivalent | score | minutes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r.module}` | {r.mutants} | {r.killed} | {r.survived} | {r.equivalent} "
            f"| {r.score:.1%} | {r.seconds / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="modules whose name contains any")
    parser.add_argument("--min-score", type=float, default=0.9, help="exit 1 below this")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    mutmut = Path(sys.executable).parent / "mutmut"
    equivalent = equivalent_mutants()
    chosen = [t for t in TARGETS if not args.only or any(o in t.name for o in args.only)]
    rows = [run_target(target, mutmut, equivalent) for target in chosen]
    summary = table(rows)
    (WORK / "summary.md").write_text(summary + "\n")
    sys.stdout.write(summary + "\n")
    return 0 if all(r.score >= args.min_score for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
