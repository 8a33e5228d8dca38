"""The load generator's smoke run (issue 5): a few hundred WebSocket users on
both gateways for a few seconds, every message delivered exactly once across
gateways. bench/smoke.sh fails on any loss or duplicate and asserts nothing
about speed. A small reconnect storm goes through the same script."""

import json
import os
import subprocess
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_smoke(live, tmp_path, *extra):
    gateways = ",".join(urllib.parse.urlsplit(live.ws(g)).netloc for g in ("gw1", "gw2"))
    build = os.environ.get("CHAT_BUILD_DIR", "build-test")
    env = dict(
        os.environ,
        CHAT_LOADGEN_GATEWAYS=gateways,
        CHAT_JWT_SECRET=live.secret,
        CHAT_BUILD_DIR=str(REPO / build),
        CHAT_LOADGEN_JSON=str(tmp_path / "smoke.json"),
    )
    return subprocess.run(
        ["bash", str(REPO / "bench" / "smoke.sh"), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def test_loadgen_smoke_loses_nothing(live, tmp_path):
    proc = run_smoke(live, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (tmp_path / "smoke.json").exists(), "the run wrote no result file"


STORM = ["--conns", "40", "--storm", "--storm-missed", "3", "--storm-timeout", "600"]


def test_loadgen_storm_settles_then_syncs_everyone(live, tmp_path):
    """--storm-settle runs once the missed messages are acknowledged; then
    every dropped user reconnects, syncs and gets each missed message."""
    marker = tmp_path / "settled"
    proc = run_smoke(live, tmp_path, *STORM, "--storm-settle", f"echo settled > '{marker}'")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert marker.read_text() == "settled\n"
    result = json.loads((tmp_path / "smoke.json").read_text())
    counts = result["counts"]
    assert counts["storm_dropped"] == 20, counts
    assert counts["storm_acked"] == 60, counts
    assert counts["storm_reconnected"] == 20, counts
    assert counts["storm_caught_up"] == 20, counts
    assert counts["storm_incomplete"] == 0 and counts["missing"] == 0, counts
    assert counts["duplicates"] == 0 and counts["error_frames"] == 0, counts
    assert result["times"]["settle_s"] > 0


def test_loadgen_storm_waits_for_a_failing_settle(live, tmp_path):
    """A settle command that fails ends the run before the reconnect: exit
    2, no summary, and the command's failure is said."""
    proc = run_smoke(live, tmp_path, *STORM, "--storm-settle", "exit 3")
    assert proc.returncode == 2, proc.stdout[-4000:]
    assert "the settle command failed (exit 3)" in proc.stdout, proc.stdout[-4000:]
    assert "reconnecting all at once" not in proc.stdout, proc.stdout[-4000:]
    assert not (tmp_path / "smoke.json").exists()
