"""The installed layout: the propensity log never shadows the standard library's logging, and
the console entry point lists its subcommands."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

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
    for command in ("serve", "demo", "retrain", "ope", "bench"):
        assert command in result.stdout


def test_library_folders_do_not_import_the_api_or_torch_where_forbidden() -> None:
    """DESIGN.md §2: no library folder imports api/; explore/ and ope/ do not import torch."""
    offenders = []
    for folder in ("explore", "fm_core", "logging", "ope", "sim"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            if re.search(r"^\s*(from|import) api\b", text, re.MULTILINE):
                offenders.append(f"{path.relative_to(REPO)} imports api")
            torch_free = folder in ("explore", "ope", "sim", "logging")
            if torch_free and re.search(r"^\s*(from|import) torch\b", text, re.MULTILINE):
                offenders.append(f"{path.relative_to(REPO)} imports torch")
    assert offenders == []
