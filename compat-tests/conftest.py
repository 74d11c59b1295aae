"""Fixtures for the stock-client compatibility tests.

Every test talks to a real `kairos serve` process (never an in-process broker):

    $KAIROS_BIN serve --listen 127.0.0.1:<port> --console 127.0.0.1:<port>
                      --data-dir <tmp dir> [extra flags]

`KAIROS_BIN` defaults to `$CARGO_TARGET_DIR/release/kairos`
(`~/.cache/kairos/target/release/kairos` when CARGO_TARGET_DIR is unset).

Fixtures:
  broker          a broker with default flags, stopped (SIGTERM, exit 0 asserted) after the test
  broker_factory  start(*flags, data_dir=None) -> Broker; Broker.restart() keeps the data dir
  topic           a unique topic name for the test
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def kairos_bin() -> str:
    explicit = os.environ.get("KAIROS_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/kairos/target")
    return os.path.join(target, "release", "kairos")


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all sockets stay bound until every port is chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class _PortTaken(Exception):
    pass


class Broker:
    """One broker process. `start()` waits until both ports answer."""

    def __init__(self, data_dir: Path, flags: list[str], log_dir: Path, name: str):
        self.data_dir = Path(data_dir)
        self.flags = list(flags)
        self.log_dir = Path(log_dir)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.console_port = 0
        self.starts = 0
        self.log_path: Path | None = None
        self.exit_codes: list[int] = []

    # -- addresses -----------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, keep_ports: bool = True) -> "Broker":
        assert not self.alive(), "broker already running"
        fresh_ports = not self.port or not keep_ports
        for attempt in range(3):
            if fresh_ports:
                self.port, self.console_port = free_ports(2)
            try:
                return self._start()
            except _PortTaken:
                if not fresh_ports or attempt == 2:
                    pytest.fail(f"ports taken by another process\n{self.log_tail()}")

    def _start(self) -> "Broker":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = kairos_bin()
        if not os.access(binary, os.X_OK):
            pytest.fail(f"broker binary not found or not executable: {binary} "
                        "(build it with `cargo build --release` or set KAIROS_BIN)")
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}.{self.starts}.log"
        cmd = [binary, "serve",
               "--listen", self.bootstrap,
               "--console", f"127.0.0.1:{self.console_port}",
               "--data-dir", str(self.data_dir), *self.flags]
        # every flag is also a KAIROS_<NAME> env var: only the flags given here count
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_") or k == "KAIROS_LOG"}
        env.setdefault("KAIROS_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")      # panics print a backtrace ...
        env.setdefault("RUST_LIB_BACKTRACE", "0")  # ... startup errors (anyhow) do not
        env.setdefault("NO_COLOR", "1")
        with open(self.log_path, "wb") as logf:
            logf.write(("$ " + " ".join(cmd) + "\n").encode())
            logf.flush()
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        kafka_ok = console_ok = False
        last_err = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.exit_codes.append(self.proc.returncode)
                if "Address already in use" in self.log_text():
                    raise _PortTaken()
                head = "\n".join(self.log_text().splitlines()[:20])
                pytest.fail(f"broker exited with {self.proc.returncode} during startup\n{head}\n...\n{self.log_tail(20)}")
            if not kafka_ok:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        kafka_ok = True
                except OSError as e:
                    last_err = f"kafka port: {e}"
            if kafka_ok and not console_ok:
                try:
                    with urllib.request.urlopen(self.console + "/healthz", timeout=1) as r:
                        console_ok = r.status == 200
                        if not console_ok:
                            last_err = f"/healthz answered {r.status}"
                except Exception as e:  # noqa: BLE001 - anything means "not ready yet"
                    last_err = f"/healthz: {e}"
            if kafka_ok and console_ok:
                return
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"broker not ready after {READY_TIMEOUT_S}s ({last_err})\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S, check: bool = True) -> int:
        """SIGTERM and wait; with check, assert a clean exit (code 0) within `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            rc = self.proc.returncode if self.proc else 0
            if check:
                assert rc == 0, f"broker had already exited with {rc}\n{self.log_tail()}"
            return rc
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            if check:
                pytest.fail(f"broker did not exit within {timeout}s of SIGTERM\n{self.log_tail()}")
            return -9
        self.exit_codes.append(rc)
        if check:
            assert rc == 0, f"broker exited with {rc} after SIGTERM (expected 0)\n{self.log_tail()}"
        return rc

    def kill(self) -> None:
        """SIGKILL (kill -9), as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.exit_codes.append(self.proc.returncode)

    def restart(self, check: bool = True) -> "Broker":
        """Clean stop (SIGTERM, exit 0 asserted) and start again on the same data dir and ports."""
        self.stop(check=check)
        return self.start()

    # -- diagnostics ---------------------------------------------------------------
    def log_text(self, start: int | None = None) -> str:
        path = self.log_path if start is None else self.log_dir / f"{self.name}.{start}.log"
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()
        return "---- broker log tail (%s) ----\n%s" % (self.log_path, "\n".join(lines[-n:]))

    def assert_no_panic(self) -> None:
        for i in range(1, self.starts + 1):
            text = self.log_text(i)
            m = re.search(r"panicked at|stack backtrace:", text)
            assert m is None, f"broker log {i} shows a panic:\n{text[max(0, m.start() - 2000):m.start() + 2000]}"

    def partition_log_files(self, topic: str, partition: int) -> list[Path]:
        """Segment files `<data-dir>/**/<topic>-<partition>/*.log`."""
        dirs = [p for p in self.data_dir.rglob(f"{topic}-{partition}") if p.is_dir()]
        files = []
        for d in dirs:
            files.extend(sorted(d.glob("*.log")))
        return files

    def tree(self, limit: int = 60) -> str:
        out = []
        for p in sorted(self.data_dir.rglob("*"))[:limit]:
            out.append(f"{p.relative_to(self.data_dir)}{'/' if p.is_dir() else ''}"
                       f" {p.stat().st_size if p.is_file() else ''}")
        return "\n".join(out)


class BrokerFactory:
    def __init__(self, tmp_path: Path, request):
        self.tmp_path = tmp_path
        self.brokers: list[Broker] = []
        self.request = request

    def start(self, *flags: str, data_dir: Path | None = None) -> Broker:
        n = len(self.brokers)
        if data_dir is None:
            data_dir = self.tmp_path / f"data{n}"
        log_dir = self.tmp_path / "logs"
        log_dir.mkdir(exist_ok=True)
        b = Broker(data_dir, list(flags), log_dir, f"broker{n}")
        self.brokers.append(b)
        return b.start()

    def close(self) -> None:
        errors = []
        for b in self.brokers:
            if b.alive():
                try:
                    b.stop(check=True)
                except BaseException as e:  # noqa: BLE001 - collect, report after all are stopped
                    errors.append(getattr(e, "msg", None) or str(e) or repr(e))
            try:
                b.assert_no_panic()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            pytest.fail("broker teardown:\n" + "\n".join(errors))


@pytest.fixture
def broker_factory(tmp_path, request):
    f = BrokerFactory(tmp_path, request)
    request.node._kairos_factory = f
    yield f
    f.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, append the tail of each broker's log to the report."""
    outcome = yield
    report = outcome.get_result()
    f = getattr(item, "_kairos_factory", None)
    if report.when == "call" and report.failed and f is not None:
        for b in f.brokers:
            report.sections.append((f"{b.name} log tail", b.log_tail(30)))


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory.start()


_topic_counter = [0]


@pytest.fixture
def topic(request) -> str:
    _topic_counter[0] += 1
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"t{_topic_counter[0]}-{base}"
