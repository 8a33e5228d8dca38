"""The load generator's smoke run (issue 5): a few hundred WebSocket users on
both gateways for a few seconds, every message delivered exactly once across
gateways. bench/smoke.sh fails on any loss or duplicate and asserts nothing
about speed."""

import os
import subprocess
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_loadgen_smoke_loses_nothing(live, tmp_path):
    gateways = ",".join(urllib.parse.urlsplit(live.ws(g)).netloc for g in ("gw1", "gw2"))
    build = os.environ.get("CHAT_BUILD_DIR", "build-test")
    env = dict(
        os.environ,
        CHAT_LOADGEN_GATEWAYS=gateways,
        CHAT_JWT_SECRET=live.secret,
        CHAT_BUILD_DIR=str(REPO / build),
        CHAT_LOADGEN_JSON=str(tmp_path / "smoke.json"),
    )
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "smoke.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (tmp_path / "smoke.json").exists(), "the run wrote no result file"
