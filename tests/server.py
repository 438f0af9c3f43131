"""A real Kairos server process for integration tests: port 0, its own data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from service._pb.kairos.v1 import admin_service_pb2_grpc, decision_service_pb2_grpc, feature_service_pb2_grpc


@dataclass
class RunningServer:
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    channel: grpc.Channel | None = None

    def start(self, timeout: float = 60.0) -> RunningServer:
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "warning",
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become ready")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return self

    def log(self) -> str:
        return (self.data_dir.parent / f"{self.data_dir.name}.log").read_text(errors="replace")

    @property
    def decisions(self) -> decision_service_pb2_grpc.DecisionServiceStub:
        return decision_service_pb2_grpc.DecisionServiceStub(self.channel)

    @property
    def admin(self) -> admin_service_pb2_grpc.AdminServiceStub:
        return admin_service_pb2_grpc.AdminServiceStub(self.channel)

    @property
    def features(self) -> feature_service_pb2_grpc.FeatureServiceStub:
        return feature_service_pb2_grpc.FeatureServiceStub(self.channel)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close_channel()

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._close_channel()
        return code

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
