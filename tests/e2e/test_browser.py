"""The web client (gateway/web) in Debian's Chromium, through the browser
test in tests/browser (node's test runner, TAP), against this session's gw1.
Skipped, with the reason, where node 20 is not to be had."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import LOGS, REPO

RUN = REPO / "tests" / "browser" / "run.sh"


def node_major():
    node = shutil.which("node")
    if not node:
        return 0
    out = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


@pytest.mark.timeout(900)
def test_web_client_in_chromium(live):
    if not RUN.exists():
        pytest.skip("no tests/browser/run.sh")
    if node_major() < 20 or not shutil.which("npm"):
        pytest.skip("the browser test needs node >= 20 and npm")
    env = dict(os.environ, CHAT_WEB_URL=live.http("gw1"), CHAT_SCREENSHOT=str(LOGS / "browser-chat.png"))
    log = Path(LOGS) / "browser.log"
    with open(log, "wb") as out:
        proc = subprocess.run(["bash", str(RUN)], cwd=RUN.parent, env=env, stdout=subprocess.PIPE, stderr=out, timeout=880)
    tap = proc.stdout.decode(errors="replace")
    with open(log, "ab") as out:
        out.write(b"\n--- TAP\n" + proc.stdout)
    failed = [ln for ln in tap.splitlines() if re.match(r"^\s*not ok\b", ln) and "# TODO" not in ln]
    passed = [ln for ln in tap.splitlines() if re.match(r"^\s*ok\b", ln)]
    assert proc.returncode == 0 and not failed, f"browser test failed (exit {proc.returncode}, log {log}): {failed[:10]}"
    assert passed, f"the browser test ran nothing (log {log})"
