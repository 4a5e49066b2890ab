"""The benchmark's do-nothing app starts on KeyVault's own server and answers as it must: a
`make bench` that cannot start its baseline measures nothing."""

from __future__ import annotations

import subprocess
import sys
import time

import requests

from tests.conftest import PROJECT_ROOT, _free_port


def test_the_ceiling_app_serves_on_keyvaults_server(tmp_path):
    port = _free_port()
    log = tmp_path / "ceiling.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.ceiling_app", "--port", str(port),
                                    "--workers", "1"], cwd=PROJECT_ROOT, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert health.status_code == 200
        answer = requests.post(f"http://127.0.0.1:{port}/api/verify/", json={"key": "x"},
                               timeout=5)
        assert answer.status_code == 200 and answer.json()["active"] is True
        time.sleep(0.3)
        assert '"POST /api/verify/ HTTP/1.1" 200' in log.read_text()  # the access log, as KeyVault's
    finally:
        process.terminate()
        process.wait(timeout=30)
