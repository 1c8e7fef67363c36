"""The Spark session: a bad ``--master`` is refused before a JVM starts, a missing Java runtime
is named, and nothing the service or the command line imports at start-up imports pyspark."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ope.spark_session import MasterError, SparkUnavailableError, check_master, spark_session

REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("master", "says"),
    [
        ("", "got an empty value"),
        ("locl[2]", "must be local, local\\[N\\]"),
        ("local[0]", "must be local, local\\[N\\]"),
        ("local[two]", "must be local, local\\[N\\]"),
        ("spark://", "must be local"),
        ("http://example.org:7077", "must be local"),
        (f"spark://127.0.0.1:{_closed_port()}", "no standalone Spark master answers there"),
    ],
)
def test_a_bad_master_is_refused_with_the_forms_it_takes(master: str, says: str) -> None:
    with pytest.raises(MasterError, match=says):
        check_master(master)


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "local[2,3]", "yarn"])
def test_good_masters_pass(master: str) -> None:
    assert check_master(master) == master


def test_a_missing_java_runtime_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(SparkUnavailableError, match="no Java runtime"):
        spark_session("local[1]")


def test_the_service_and_the_command_line_do_not_import_pyspark() -> None:
    code = (
        "import sys, api.app, cli.main, ope, ope.spark_estimate, ope.spark_dataset, "
        "proplog.spark_training_table; print('pyspark' in sys.modules, 'py4j' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False False"
