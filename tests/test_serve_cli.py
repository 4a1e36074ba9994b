"""``pgmre serve`` as a user starts it: its own process on 127.0.0.1, limits from the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from pgmre.cli import app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_command(trained_caption_run: Path) -> None:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "pgmre.cli",
        "serve",
        "--run",
        str(trained_caption_run),
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        [*command, "--max-text-chars", "40", "--max-batch", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "pgmre serve did not answer within 90 s"
            try:
                health = httpx.get(f"{url}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health["limits"]["max_text_chars"] == 40 and health["batching"]["max_batch"] == 4
        body = {"text": "Jonas Berg joined Summit Bank", "head": "Jonas Berg", "tail": "Summit Bank"}
        answer = httpx.post(f"{url}/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["relation"] in httpx.get(f"{url}/labels").json()["labels"]
        too_long = httpx.post(
            f"{url}/predict", json={**body, "text": body["text"] + " again" * 5}, timeout=60
        )
        assert too_long.status_code == 422 and "over the limit of 40" in too_long.json()["error"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_bad_limits(trained_caption_run: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--run", str(trained_caption_run), "--max-image-bytes", "10"])
    assert result.exit_code == 2 and "max_image_bytes" in result.output
