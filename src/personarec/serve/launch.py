"""Run ``personarec serve`` as a child process and wait until it answers (tests, benchmarks,
notebooks). The child is a real server: its own interpreter, uvicorn, worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, run_dir: str | Path, *, port: int | None = None, args: list[str] | None = None,
                 sets: list[str] | None = None, log_path: str | Path | None = None,
                 env: dict[str, str] | None = None, prefix: list[str] | None = None) -> None:  # fmt: skip
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.args = list(args or [])
        self.sets = list(sets or [])
        self.log_path = Path(log_path) if log_path else self.run_dir / f"serve-{self.port}.log"
        self.env = dict(env or {})
        self.prefix = list(prefix or [])  # e.g. ["prlimit", "--fsize=262144", "--"]: run the server under limits
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        cmd = [*self.prefix, sys.executable, "-m", "personarec.cli", "serve", "--run-dir", str(self.run_dir), "--port", str(self.port),
               *self.args]  # fmt: skip
        for s in self.sets:
            cmd += ["--set", s]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")
            try:
                r = httpx.get(self.url + "/healthz", timeout=1.0)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout_s} s; log:\n{self.log()[-4000:]}")

    def health(self) -> dict:
        return httpx.get(self.url + "/healthz", timeout=5).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (graceful: workers drain), then SIGKILL of the whole group if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        code = self.proc.returncode
        try:  # any worker left behind by a crash
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()
        self.proc = None
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
