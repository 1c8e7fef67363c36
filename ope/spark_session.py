"""The Spark session of loopbreak's distributed jobs: the master URL checked before a JVM starts,
Java looked for, and one session configured for small jobs (UI off, few shuffle partitions,
Python workers on this interpreter).

pyspark is imported inside functions only: nothing the service imports starts or needs a JVM.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
SHUFFLE_PARTITIONS = 4

_LOCAL = re.compile(r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?")
_STANDALONE = re.compile(r"spark://[^:/\s]+:\d{1,5}(,[^:/\s]+:\d{1,5})*")
_CONNECT_TIMEOUT_S = 5.0


class SparkUnavailableError(RuntimeError):
    """Spark cannot start here: no Java runtime, or pyspark is not installed."""


class MasterError(ValueError):
    """A ``--master`` URL Spark cannot use; the message says which forms it takes."""


def java_executable() -> str | None:
    """The ``java`` Spark would start: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def check_master(master: str) -> str:
    """``master`` when Spark can use it: ``local``, ``local[N]``, ``local[*]``, ``local[N,F]``,
    ``spark://HOST:PORT`` (a standalone master that answers on that port), ``yarn``, or
    ``k8s://URL``. A standalone master that does not answer is refused here, because Spark
    itself would retry for minutes before giving up."""
    if not isinstance(master, str) or not master.strip():
        raise MasterError("--master must be a Spark master URL; got an empty value")
    master = master.strip()
    if _LOCAL.fullmatch(master) or master == "yarn" or master.startswith("k8s://"):
        return master
    if _STANDALONE.fullmatch(master):
        for address in master.removeprefix("spark://").split(","):
            host, port = address.rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S):
                    return master
            except OSError:
                continue
        raise MasterError(f"--master {master}: no standalone Spark master answers there")
    raise MasterError(
        f"--master must be local, local[N], local[*], spark://HOST:PORT, yarn or k8s://URL; "
        f"got {master!r}"
    )


def spark_session(master: str = DEFAULT_MASTER, *, app_name: str = "loopbreak") -> SparkSession:
    """The process's Spark session on ``master`` (an existing one is reused: Spark allows one per
    process). Python workers run this interpreter, so they import what the driver imports."""
    master = check_master(master)
    if java_executable() is None:
        raise SparkUnavailableError(
            "no Java runtime: Spark needs java on PATH or $JAVA_HOME "
            "(Debian: apt-get install openjdk-17-jre-headless; `make test` does so as root)"
        )
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise SparkUnavailableError(f"pyspark is not installed: {exc}") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    logger.info("starting Spark on %s", master)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=ERROR")
    )
    with quiet_pandas_warning():
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def quiet_pandas_warning() -> Iterator[None]:
    """pyspark 4.3 warns, on every pandas UDF it builds, that pandas 3 is not fully supported; the
    UDFs here pass plain numeric, string and binary columns, which the tests check against the
    in-process path."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*", category=FutureWarning)
        yield
