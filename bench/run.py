"""How long ``make run`` takes, on a machine with the dependencies installed, until the platform
serves (issue 9: ``make_run_to_serving_s``, target < 30 s), written to ``bench/results/run.json``.

``make run`` is ``make setup system`` (no-ops once installed) then ``tsunagu dev up --demo``; the
demo story runs after the platform serves, so it is not part of the figure. Measured:

- ``make_setup_system_noop_s``: ``make -s setup system`` with everything installed (median of
  ``--runs``).
- ``dev_up_cold_to_serving_s``: ``.venv/bin/tsunagu dev up --state-dir <fresh> --base-port …
  --kafka-port … --jlis-port …`` (no ``--demo``) as a subprocess, from its start until its stdout
  says "all services ready" and then every service's ``/readyz`` answers 200; a fresh state dir
  each time, so each run pays what a newcomer pays (credentials, the SoftHSM2 token, the CA key
  ceremony, the signing keys, the dashboard client); median of ``--runs``. Each is then stopped
  with SIGINT (``dev_up_stop_s``: until the process exits).
- ``dev_up_warm_to_serving_s``: one more start on the last run's state dir (all of that exists).
- ``make_run_to_serving_s`` = ``make_setup_system_noop_s`` + ``dev_up_cold_to_serving_s``.

The notes break a start into the phases of ``tsunagu.devstack.stack.start_stack`` (the times of
the progress lines ``dev up`` prints, and when each service's ``/readyz`` first answered 200,
polled every 0.1 s) and give each service module's bare import time (one process at a time).
Before each start the benchmark waits (at most ``--max-wait`` s) for the 1-minute load average to
fall under ``--max-load``; the load at each start is in the notes.

    .venv/bin/python -m bench.run [--runs 3] [--quick] [--max-load 3] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO_ROOT, RESULTS_DIR, metric
from bench.report import publish
from tsunagu.devstack.ports import free_port_block, free_port_outside
from tsunagu.devstack.stack import SERVICES, STARTED_LAST

TARGET_S = 30.0
READY_LINE = "all services ready"
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
# The progress lines of `dev up` (libs/devstack/cli.py, stack.py), in order: the phase each ends.
PHASES = [
    ("starting Tsunagu", "interpreter + CLI imports"),
    ("SoftHSM2 token", "service credentials + SoftHSM2 token"),
    ("Kafka-compatible broker", "tansu"),
    ("J-LIS sandbox", "J-LIS sandbox"),
    ("@services", "signer, ca, idp, broker, jlis-sync: start → /readyz 200"),
    ("CA hierarchy ready", "CA ceremony (root, issuing CA, OCSP keys in the HSM)"),
    ("ID-token", "ID-token and receipt signing keys"),
    ("citizen dashboard registered", "dashboard client at the idp + consent start → ready"),
    ("sample relying parties ready", "J-LIS push subscription + sample apps registered and started"),
    (READY_LINE, "stack described"),
    ("@readyz", "every /readyz checked by the benchmark"),
]


@dataclass
class Start:
    """One ``dev up``: when each progress line and each service's first ready answer came."""

    total_s: float = 0.0
    stop_s: float = 0.0
    load: float = 0.0
    lines: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)

    def phases(self) -> dict[str, float]:
        marks = {**self.lines, "@readyz": self.total_s}
        early = [at for name, at in self.ready.items() if name not in STARTED_LAST]
        if early:
            marks["@services"] = max(early)
        durations, previous = {}, 0.0
        for key, phase in PHASES:
            if key in marks:
                durations[phase] = max(0.0, marks[key] - previous)
                previous = marks[key]
        return durations


def wait_for_quiet(max_load: float, max_wait_s: float) -> float:
    """Wait until the 1-minute load average is under ``max_load`` (or the time runs out)."""
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def time_make_noop() -> float:
    started = time.monotonic()
    subprocess.run(["make", "-s", "setup", "system"], cwd=REPO_ROOT, check=True, capture_output=True)
    return time.monotonic() - started


def _poll_ready(urls: dict[str, str], started: float, ready: dict[str, float], done: threading.Event) -> None:
    with httpx.Client(timeout=1.0) as client:
        while not done.is_set() and len(ready) < len(urls):
            for name, url in urls.items():
                if name in ready:
                    continue
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        ready[name] = time.monotonic() - started
                except httpx.HTTPError:
                    pass
            done.wait(0.1)


def _all_ready(urls: dict[str, str], deadline: float) -> None:
    with httpx.Client(timeout=2.0) as client:
        for name, url in urls.items():
            while True:
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} /readyz did not answer 200")
                time.sleep(0.05)


def start_once(state_dir: Path) -> Start:
    """``dev up`` on ``state_dir`` until it serves, then SIGINT and wait for it to exit."""
    base = free_port_block()
    kafka = free_port_outside(base)
    jlis = free_port_outside(base, kafka)
    urls = {name: f"http://127.0.0.1:{base + offset}" for offset, name in enumerate(SERVICES)}
    command = [str(REPO_ROOT / ".venv" / "bin" / "tsunagu"), "dev", "up", "--state-dir", str(state_dir)]
    command += ["--base-port", str(base), "--kafka-port", str(kafka), "--jlis-port", str(jlis)]
    result, done = Start(load=os.getloadavg()[0]), threading.Event()
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    poller = threading.Thread(target=_poll_ready, args=(urls, started, result.ready, done), daemon=True)
    poller.start()
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the start deadline is enforced by the watchdog below
            output.append(line)
            for key, _ in PHASES:
                if key in line and key not in result.lines:
                    result.lines[key] = time.monotonic() - started
            if READY_LINE in line:
                break
        else:
            raise RuntimeError("dev up exited before serving:\n" + "".join(output[-20:]))
        _all_ready(urls, started + START_TIMEOUT_S)
        result.total_s = time.monotonic() - started
    finally:
        done.set()
        stopping = time.monotonic()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)  # dev up stops its services (SIGTERM, then SIGKILL)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        finally:
            if process.stdout is not None:
                process.stdout.read()
        result.stop_s = time.monotonic() - stopping
    return result


def _watchdog(limit_s: float) -> threading.Timer:
    """Interrupt the run if a start hangs (its stdout read would block for ever)."""
    timer = threading.Timer(limit_s, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
    return timer


def import_times() -> dict[str, float]:
    """Seconds to import each service's app module in a fresh interpreter, one at a time."""
    times = {}
    for name, (package, _) in SERVICES.items():
        started = time.monotonic()
        command = [sys.executable, "-c", f"import tsunagu.{package}.app"]
        subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
        times[name] = time.monotonic() - started
    return times


def _seconds(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f} s" for name, value in values.items())


def _median_phases(starts: list[Start]) -> dict[str, float]:
    names = [phase for _, phase in PHASES]
    found = [start.phases() for start in starts]
    return {
        name: statistics.median(p[name] for p in found) for name in names if all(name in p for p in found)
    }


def _measured(state_dir: Path, max_load: float, max_wait_s: float) -> Start:
    wait_for_quiet(max_load, max_wait_s)
    timer = _watchdog(START_TIMEOUT_S + STOP_TIMEOUT_S)
    try:
        return start_once(state_dir)
    finally:
        timer.cancel()


def _note(kind: str, start: Start) -> str:
    ready = dict(sorted(start.ready.items(), key=lambda entry: entry[1]))
    return (
        f"{kind}: {start.total_s:.1f} s to serving (load {start.load:.2f} at the start), stop "
        f"{start.stop_s:.1f} s; phases: {_seconds(start.phases())}; first /readyz 200: {_seconds(ready)}"
    )


def run(runs: int, max_load: float, max_wait_s: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    notes: list[str] = []
    make_noop = statistics.median(time_make_noop() for _ in range(runs))
    cold: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-run-") as scratch:
        for index in range(runs):
            cold.append(_measured(Path(scratch) / f"state-{index}", max_load, max_wait_s))
            notes.append(_note(f"cold start {index + 1}", cold[-1]))
        warm = _measured(Path(scratch) / f"state-{runs - 1}", max_load, max_wait_s)
        notes.append(_note("warm restart (the last state dir again)", warm))
    cold_s = statistics.median(start.total_s for start in cold)
    notes.insert(0, f"median of {runs} cold starts by phase: {_seconds(_median_phases(cold))}")
    notes.append(f"bare import of each service's app module (fresh interpreter): {_seconds(import_times())}")
    notes.append(f"make -s setup system with everything installed: median {make_noop:.2f} s of {runs}")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        notes.append(
            "PYTHONDONTWRITEBYTECODE is set here: every process compiles the project's own modules "
            "from source (≈ 0.2-0.3 s more per process than with __pycache__)"
        )
    metrics = {
        "make_run_to_serving_s": metric(make_noop + cold_s, "s", "lower", target=TARGET_S),
        "dev_up_cold_to_serving_s": metric(cold_s, "s", "lower"),
        "dev_up_warm_to_serving_s": metric(warm.total_s, "s", "lower"),
        "dev_up_stop_s": metric(statistics.median(start.stop_s for start in cold), "s", "lower"),
        "make_setup_system_noop_s": metric(make_noop, "s", "lower"),
    }
    return metrics, notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="cold starts (each on a fresh state dir)")
    parser.add_argument("--quick", action="store_true", help="one cold start (smoke run)")
    parser.add_argument("--max-load", type=float, default=3.0, help="wait for a lower load before a start")
    parser.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait for that, at most")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)
    metrics, notes = run(runs, args.max_load, args.max_wait)
    if args.quick:
        notes.append("quick run: one cold start, not the measurement")
    notes.append("load average at the end " + " ".join(f"{value:.2f}" for value in os.getloadavg()))
    publish("run", metrics, notes, args.output_dir)


if __name__ == "__main__":
    main()
