"""The learning process's pool of serving workers: start them, restart the ones that die, stop them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import structlog

from service.settings import ENV_PREFIX, Settings

log = structlog.get_logger("kairos.workers")


class WorkerPool:
    def __init__(self, settings: Settings, primary_address: str, port: int, run_dir: Path) -> None:
        self.settings, self.primary_address, self.port, self.run_dir = settings, primary_address, port, run_dir
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * settings.workers
        self._stopping = False

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        for field in fields(Settings):
            value = getattr(self.settings, field.name)
            if value is not None:
                env[ENV_PREFIX + field.name.upper()] = str(value)
        env[ENV_PREFIX + "PORT"] = str(self.port)
        for name in ("CONFIG", "PORT_FILE"):
            env.pop(ENV_PREFIX + name, None)
        env[ENV_PREFIX + "HTTP_PORT"] = "0"
        return env

    def _ready_file(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.ready"

    def _spawn(self, index: int) -> None:
        self._ready_file(index).unlink(missing_ok=True)
        self.processes[index] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "worker",
                "--primary",
                self.primary_address,
                "--ready-file",
                str(self._ready_file(index)),
            ],
            env=self._environment(),
        )

    async def start(self, timeout: float = 120.0) -> None:
        for index in range(len(self.processes)):
            self._spawn(index)
        deadline = time.monotonic() + timeout
        while not all(self._ready_file(i).exists() for i in range(len(self.processes))):
            for process in self.processes:
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"a serving worker exited with {process.returncode} while starting")
            if time.monotonic() > deadline:
                raise TimeoutError("serving workers did not become ready")
            await asyncio.sleep(0.05)
        log.info("workers_serving", workers=len(self.processes), port=self.port)

    async def watch(self) -> None:
        """Restart workers that die (a crash, or kill -9) while the pool is running."""
        while not self._stopping:
            await asyncio.sleep(0.5)
            for index, process in enumerate(self.processes):
                if self._stopping or process is None or process.poll() is None:
                    continue
                log.warning("worker_died", index=index, exit_code=process.returncode)
                self._spawn(index)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for process in running:
            if process.poll() is None:
                log.warning("worker_killed_after_grace", pid=process.pid)
                process.kill()
                process.wait()
