"""An open-loop HTTP load generator at a fixed rate, run in a process of its own.

Why a hand-written one: wrk2 (Gil Tene's open-loop, coordinated-omission-corrected fork of wrk)
is the standard tool, but it is not packaged here (``apt-cache policy wrk2`` finds nothing), and
``wrk`` and ``hey`` are closed-loop: each connection waits for an answer before it sends again,
so a server that stalls slows the client down and the stall is hidden from the percentiles
(coordinated omission). This module does what wrk2 does, at the small rates a 2-core machine
serves, with the standard library only (so that it starts fast and its own CPU stays small, since
on this machine it takes it from the server it measures):

- **open loop**: the send times are fixed before the run (:func:`schedule`: Poisson or uniform
  arrivals at ``rate`` per second, seeded), and each request is sent at its time whatever the
  earlier ones are doing;
- **latency from the scheduled time**: each request's latency runs from the time it was *due*,
  not from when it was written to a socket, so that a request held up by a busy connection pool,
  a slow generator or a stalled server counts the whole wait (the coordinated-omission correction);
- **lean**: asyncio protocols (no task, stream or timeout object per request), keep-alive
  HTTP/1.1, the request bytes built before the clock starts, and a pool of connections sized to
  the rate (opened before the run and used in turn; more are opened, up to ``max_connections``,
  only when all are busy; beyond that requests wait for one, the wait counted in their latency).
  On this project's VM a timer wake-up alone costs about 60 µs of CPU, so the generator spends
  roughly 130-350 µs per request, a fifth to a third of what the minimal reference server does.
  A request that meets a keep-alive connection the server is closing, before any byte of an
  answer, is sent again once on another connection (its latency still from its scheduled time).

The first ``warmup_s`` seconds of the schedule are sent but not measured. Every answer is
classified: 2xx, 503 (shed), other 5xx, 4xx, timed out (no answer within ``timeout_s`` of the
due time) and connection errors. The generator reports its own CPU per request sent, the lag
between due and actual send times (if that grows, the generator, not the server, is the limit),
and the CPU used by the server's processes during the measured window, read from ``/proc``
(the process ``server_pid`` and all its descendants, as uvicorn's workers are).

Use :func:`run_generator` (which starts ``python -m bench.loadgen`` with the spec as JSON on its
standard input and reads the result as JSON from its standard output), or the module directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ARRIVALS = ("poisson", "uniform")


def schedule(
    rate: float, seconds: float, *, arrival: str = "poisson", seed: int = 0
) -> list[float]:
    """The due times (seconds from the start, increasing, all < ``seconds``) of a run at
    ``rate`` requests per second: exponential gaps (Poisson arrivals, seeded) or equal ones."""
    if rate <= 0 or seconds <= 0:
        raise ValueError(f"rate and seconds must be > 0; got {rate} and {seconds}")
    if arrival == "uniform":
        return [i / rate for i in range(math.ceil(seconds * rate - 1e-9))]
    if arrival != "poisson":
        raise ValueError(f"arrival must be one of {ARRIVALS}; got {arrival!r}")
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < seconds:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of an ascending list, interpolated linearly (numpy's default)."""
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Spec:
    """One run of the generator: ``bodies`` (JSON texts) are posted in turn to ``path``."""

    host: str
    port: int
    path: str
    bodies: list[str]
    rate: float
    seconds: float
    warmup_s: float = 1.0
    arrival: str = "poisson"
    seed: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0
    connections: int | None = None
    """Connections opened before the run; None: enough for the rate at 20 ms each, at least 2."""
    max_connections: int | None = None
    """The most connections open at once; None: half a second's worth of requests, 16 to 512."""
    server_pid: int | None = None
    id_field: str | None = None
    """A top-level string field of the 2xx answers to collect (e.g. ``decision_id``)."""


def _request_bytes(spec: Spec) -> list[bytes]:
    head = f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
    head += "Content-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in spec.headers.items())
    out = []
    for body in spec.bodies:
        data = body.encode()
        out.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return out


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, from ``/proc`` (empty when ``root`` is gone)."""
    parents: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        parents[int(name)] = int(text[text.rfind(b")") + 2 :].split()[1])
    if root not in parents:
        return []
    found = []
    for pid in parents:
        p = pid
        while p > 1 and p != root:
            p = parents.get(p, 0)
        if p == root:
            found.append(pid)
    return found


def _cpu_seconds(pids: list[int]) -> float | None:
    """CPU seconds (user + system) of ``pids`` from ``/proc``; None when none is readable."""
    tick = os.sysconf("SC_CLK_TCK")
    total, seen = 0.0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        fields = text[text.rfind(b")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        seen = True
    return total if seen else None


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight; answers are parsed
    in ``data_received`` (status line, Content-Length or chunked, Connection: close)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: int | None = None
        self.need = -1  # bytes of the whole answer, once its head is read
        self.head_end = 0
        self.status = 0
        self.chunked = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, i: int) -> None:
        self.current = i
        self.need = -1
        assert self.transport is not None
        self.transport.write(self.run.requests[i % len(self.run.requests)])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.current is None:
            return
        if self.need < 0 and not self._read_head():
            return
        if self.chunked:
            if not self.buffer.endswith(b"0\r\n\r\n"):
                return
            self.need = len(self.buffer)
        if len(self.buffer) < self.need:
            return
        body = bytes(self.buffer[self.head_end : self.need])
        del self.buffer[: self.need]
        i, self.current = self.current, None
        self.run.answered(i, self.status, body)
        if self.close_after:
            self.close()
        else:
            self.run.release(self)

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        self.head_end = end + 4
        self.chunked = False
        self.close_after = parts[0] != b"HTTP/1.1"
        length = 0
        try:
            self.status = int(parts[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"transfer-encoding":
                    self.chunked = b"chunked" in value.lower()
                elif lowered == b"connection":
                    self.close_after = b"close" in value.lower()
        except (IndexError, ValueError):
            self.close()
            return False
        self.need = self.head_end + length
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current is not None:
            i, self.current = self.current, None
            if self.buffer or not self.run.retry(i):
                self.run.failed(i, "connection_error")
        self.run.lost(self)


class _Run:
    """The state of one run: the connections, the requests waiting for one, the outcomes."""

    def __init__(self, spec: Spec, due: list[float], start: float) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.requests = _request_bytes(spec)
        self.due = due
        self.start = start
        n = len(due)
        self.latency = [math.nan] * n
        self.outcome = [""] * n
        self.send_lag = [0.0] * n
        self.ids: list[str] = []
        self.marker = f'"{spec.id_field}":"'.encode() if spec.id_field else b""
        self.idle: deque[_Connection] = deque()  # oldest first, so none idles into a timeout
        self.retried: set[int] = set()
        self.busy: dict[int, _Connection] = {}
        self.waiting: deque[int] = deque()
        self.open = 0  # open or opening
        self.opened = 0
        self.cap = spec.max_connections or min(512, max(16, math.ceil(spec.rate * 0.5)))
        self.remaining = n
        self.finished = asyncio.Event()
        if n == 0:
            self.finished.set()

    async def connect(self) -> None:
        self.open += 1
        try:
            _, connection = await self.loop.create_connection(
                lambda: _Connection(self), self.spec.host, self.spec.port
            )
        except OSError:
            self.open -= 1
            while self.waiting:  # the server refuses: fail the oldest waiting request
                i = self.waiting.popleft()
                if not self.outcome[i]:
                    self.failed(i, "connection_error")
                    break
            return
        self.opened += 1
        self.release(connection)

    def send(self, i: int) -> None:
        self.send_lag[i] = self.loop.time() - self.start - self.due[i]
        if self.idle:
            connection = self.idle.popleft()
            self.busy[i] = connection
            connection.send(i)
            return
        self.waiting.append(i)
        if self.open < self.cap:
            self.loop.create_task(self.connect())

    def release(self, connection: _Connection) -> None:
        while self.waiting:
            i = self.waiting.popleft()
            if not self.outcome[i]:
                self.busy[i] = connection
                connection.send(i)
                return
        self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        if self.waiting and self.open < self.cap:
            self.loop.create_task(self.connect())

    def retry(self, i: int) -> bool:
        """Send request ``i`` again, first in line, if it has not been retried: the server may
        close a keep-alive connection (its idle timeout) just as a request goes out on it, before
        reading it. Its latency still counts from its scheduled time."""
        if i in self.retried or self.outcome[i]:
            return False
        self.retried.add(i)
        self.busy.pop(i, None)
        if self.idle:
            connection = self.idle.popleft()
            self.busy[i] = connection
            connection.send(i)
        else:
            self.waiting.appendleft(i)
        return True

    def _done(self, i: int, outcome: str) -> None:
        self.outcome[i] = outcome
        self.busy.pop(i, None)
        self.remaining -= 1
        if self.remaining == 0:
            self.finished.set()

    def answered(self, i: int, status: int, body: bytes) -> None:
        if self.outcome[i]:
            return
        self.latency[i] = self.loop.time() - self.start - self.due[i]
        if 200 <= status < 300:
            outcome = "2xx"
            if self.marker:
                at = body.find(self.marker)
                if at >= 0:
                    begin = at + len(self.marker)
                    self.ids.append(body[begin : body.index(b'"', begin)].decode())
        elif status == 503:
            outcome = "503"
        elif status >= 500:
            outcome = "5xx"
        else:
            outcome = "4xx"
        self._done(i, outcome)

    def failed(self, i: int, outcome: str) -> None:
        if not self.outcome[i]:
            self._done(i, outcome)

    def expire(self, now: float) -> None:
        """Time out every request sent so far whose deadline has passed; close its connection
        (an answer may still come on it)."""
        deadline = now - self.start - self.spec.timeout_s
        for i in [i for i in self.busy if self.due[i] <= deadline]:
            connection = self.busy.pop(i)
            connection.current = None
            self.failed(i, "timeout")
            connection.close()
        for i in self.waiting:
            if self.due[i] <= deadline:
                self.failed(i, "timeout")


async def _run(spec: Spec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    due = schedule(spec.rate, spec.warmup_s + spec.seconds, arrival=spec.arrival, seed=spec.seed)
    pids = _descendants(spec.server_pid) if spec.server_pid else []
    run = _Run(spec, due, start=0.0)
    pre_open = spec.connections or max(2, math.ceil(spec.rate * 0.02))
    run.cap = max(run.cap, pre_open)
    for _ in range(pre_open):
        await run.connect()
    first_measured = next((i for i, t in enumerate(due) if t >= spec.warmup_s), len(due))
    window: dict[str, float | None] = {}

    def snapshot(name: str) -> None:
        window[f"{name}_wall"] = loop.time()
        window[f"{name}_server_cpu"] = _cpu_seconds(pids) if pids else None

    cpu_start = time.process_time()
    run.start = start = loop.time() + 0.01
    loop.call_at(start + spec.warmup_s, snapshot, "start")
    next_expiry = start + 0.05
    for i, offset in enumerate(due):
        due_at = start + offset
        now = loop.time()
        if now >= next_expiry:
            run.expire(now)
            next_expiry = now + 0.05
        if due_at > now:
            await asyncio.sleep(due_at - now)
        run.send(i)
    while not run.finished.is_set():
        try:
            await asyncio.wait_for(run.finished.wait(), 0.05)
        except TimeoutError:
            run.expire(loop.time())
    if "start_wall" not in window:
        snapshot("start")
    snapshot("end")
    cpu = time.process_time() - cpu_start
    for connection in list(run.idle):
        connection.close()
    return _summary(
        spec, due, first_measured, run.latency, run.outcome, run.send_lag, run.ids, window,
        cpu, run.opened,
    )  # fmt: skip


def _summary(
    spec: Spec,
    due: list[float],
    first: int,
    latency: list[float],
    outcome: list[str],
    send_lag: list[float],
    ids: list[str],
    window: dict[str, float | None],
    cpu: float,
    opened: int,
) -> dict[str, Any]:
    measured = range(first, len(due))
    counts = Counter(outcome[i] for i in measured)
    answered = sorted(latency[i] * 1000.0 for i in measured if not math.isnan(latency[i]))
    ok = sorted(latency[i] * 1000.0 for i in measured if outcome[i] == "2xx")
    wall = (window["end_wall"] or 0.0) - (window["start_wall"] or 0.0)
    server_cpu = None
    if window.get("start_server_cpu") is not None and window.get("end_server_cpu") is not None:
        server_cpu = float(window["end_server_cpu"]) - float(window["start_server_cpu"])  # type: ignore[arg-type]
    lags = sorted(x * 1000.0 for x in send_lag)
    n_measured = len(measured)
    errors = n_measured - counts["2xx"]
    # Percentiles of every measured request; one that never answered (timed out or broken
    # connection) counts at the timeout, so that failures cannot improve the tail.
    every = sorted(
        answered + [spec.timeout_s * 1000.0] * (counts["timeout"] + counts["connection_error"])
    )
    return {
        "rate": spec.rate,
        "seconds": spec.seconds,
        "warmup_s": spec.warmup_s,
        "arrival": spec.arrival,
        "sent": len(due),
        "measured": n_measured,
        "offered_per_s": n_measured / spec.seconds,
        "achieved_per_s": counts["2xx"] / wall if wall > 0 else 0.0,
        "p50_ms": quantile(every, 0.50),
        "p99_ms": quantile(every, 0.99),
        "max_ms": every[-1] if every else math.nan,
        "ok_p50_ms": quantile(ok, 0.50),
        "ok_p99_ms": quantile(ok, 0.99),
        "n_2xx": counts["2xx"],
        "n_503": counts["503"],
        "n_5xx": counts["5xx"],
        "n_4xx": counts["4xx"],
        "timeouts": counts["timeout"],
        "connection_errors": counts["connection_error"],
        "errors": errors,
        "window_s": wall,
        "server_cpu_cores": server_cpu / wall if server_cpu is not None and wall > 0 else None,
        "server_cpu_ms_per_request": (
            server_cpu / n_measured * 1000.0 if server_cpu is not None and n_measured else None
        ),
        "generator_cpu_us_per_request": cpu / len(due) * 1e6 if due else None,
        "send_lag_p99_ms": quantile(lags, 0.99),
        "connections_opened": opened,
        "ids": ids,
    }


def generate(spec: Spec) -> dict[str, Any]:
    """Run ``spec`` in this process (see :func:`run_generator` for a process of its own)."""
    return asyncio.run(_run(spec))


def run_generator(spec: Spec, *, python: str | None = None) -> dict[str, Any]:
    """Run ``spec`` in a new process (``python -m bench.loadgen``), so that the generator shares
    no interpreter with the caller or the server; its result."""
    payload = json.dumps(spec.__dict__)
    done = subprocess.run(
        [python or sys.executable, "-m", "bench.loadgen"],
        input=payload.encode(),
        capture_output=True,
        timeout=spec.warmup_s + spec.seconds + spec.timeout_s + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the load generator exited with {done.returncode}: {done.stderr.decode()[-2000:]}"
        )
    return dict(json.loads(done.stdout))


def main() -> int:
    """Read a :class:`Spec` as JSON from standard input, write the result as JSON."""
    spec = Spec(**json.load(sys.stdin))
    sys.stdout.write(json.dumps(generate(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
