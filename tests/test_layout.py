"""The installed layout: the propensity log never shadows the standard library's logging, and
the console entry point lists its subcommands."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from layout_graph import (
    FORBIDDEN,
    PACKAGES,
    cycles,
    import_graph,
    imported_names,
    third_party_imports,
)

REPO = Path(__file__).resolve().parents[1]


def run_in_repo_root(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_import_logging_from_the_repo_root_is_the_standard_library() -> None:
    where = run_in_repo_root("import logging; print(logging.__file__)")
    assert Path(where).resolve().parent.parent == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert run_in_repo_root("import logging; print(hasattr(logging, 'getLogger'))") == "True"


def test_the_log_package_imports_as_proplog_from_the_repo_root() -> None:
    where = run_in_repo_root("import proplog.store, proplog.schema; print(proplog.store.__file__)")
    assert Path(where).resolve() == REPO / "logging" / "store.py"


def test_logging_folder_is_not_a_regular_package() -> None:
    assert (REPO / "logging").is_dir()
    assert not (REPO / "logging" / "__init__.py").exists()


def test_loopbreak_help_lists_the_subcommands() -> None:
    script = Path(sys.executable).with_name("loopbreak")
    result = subprocess.run(
        [str(script), "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for command in ("serve", "demo", "study", "retrain", "ope", "bench"):
        assert command in result.stdout


def test_each_folder_imports_only_what_its_row_of_the_layout_allows() -> None:
    """DESIGN.md §2: vocab imports nothing of the project; no library imports loop, api, cli or
    bench; loop imports neither api nor cli; api neither cli nor bench; only cli imports bench.
    Every import counts, those inside functions included; only TYPE_CHECKING blocks do not."""
    graph = import_graph()
    offenders = [
        f"{PACKAGES[module.split('.')[0]]}/: {module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] in FORBIDDEN[module.split(".")[0]]
    ]
    assert offenders == []


def test_explore_ope_sim_and_the_log_do_not_import_torch() -> None:
    """A scorer hands them arrays (DESIGN.md §2)."""
    offenders = [
        f"{module} imports {target}"
        for module, targets in third_party_imports().items()
        if module.split(".")[0] in ("vocab", "explore", "ope", "sim", "proplog")
        for target in targets
        if target.split(".")[0] == "torch"
    ]
    assert offenders == []


def test_no_import_cycle_between_folders() -> None:
    folders: dict[str, set[str]] = {name: set() for name in PACKAGES}
    for module, targets in import_graph().items():
        for target in targets:
            if target.split(".")[0] != module.split(".")[0]:
                folders[module.split(".")[0]].add(target.split(".")[0])
    assert cycles(folders) == []


def test_no_import_cycle_between_files() -> None:
    assert cycles(import_graph()) == []


def test_tests_mirror_the_packages_and_library_tests_do_not_start_the_web_service() -> None:
    """tests/<package>/ for each package, shared helpers in tests/support/, and no test of a
    library imports ``api`` (a library's tests run without the HTTP service)."""
    tests = REPO / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders == set(PACKAGES) | {"support"}
    assert [p.name for p in tests.glob("test_*.py")] == ["test_layout.py"]
    offenders = []
    for library in ("vocab", "explore", "fm_core", "proplog", "ope", "sim"):
        for path in sorted((tests / library).rglob("*.py")):
            for name, _ in imported_names(path):
                if name.split(".")[0] == "api":
                    offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []
