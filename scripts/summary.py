#!/usr/bin/env python3
"""Adds up one run of scripts/test.sh and prints its closing line.

Sources, each optional:

  --meson-log FILE  meson's testlog.json (one JSON object per test). Every
                    unindented TAP line in a test's stdout counts once:
                    `ok` passes, `not ok` fails, a `# SKIP` directive skips,
                    `not ok ... # TODO` is an expected failure (skipped). A
                    test that meson judged bad (crash, sanitizer abort,
                    timeout, non-zero exit, short plan) without any `not ok`
                    line counts as one more failure; a test that printed no
                    TAP at all counts as one test by meson's verdict.
  --junit FILE      pytest's --junitxml report: each <testcase> counts once
                    (failure or error fails, skipped skips). With
                    --junit-required a missing or unreadable report is one
                    failure (pytest itself broke).
  --results FILE    lines `name<TAB>pass|fail|skip<TAB>log path` written by
                    test.sh for its own checks (format, and the build or stack
                    when they fail).

Prints the failing tests with where their logs are, then, as the very last
line, `N passed, N failed` (`, N skipped` when any were skipped). Exits 1 if
anything failed or nothing ran at all, else 0. Standard library only.
"""

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET

TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*)(?:#\s*(.*))?$")
MESON_OK = {"OK", "EXPECTEDFAIL"}
RANK = {"pass": 0, "skip": 1, "fail": 2}


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []  # (name, log path)

    def add(self, status, name, log):
        if status == "pass":
            self.passed += 1
        elif status == "skip":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append((name, log))


def count_tap(stdout):
    """Returns (passed, failed, skipped, first failing descriptions)."""
    passed = failed = skipped = 0
    failing = []
    for line in (stdout or "").splitlines():
        if line.startswith("Bail out!"):
            failed += 1
            failing.append(line.strip())
            continue
        m = TAP_LINE.match(line.rstrip())
        if not m:
            continue
        verdict, number, desc, directive = m.groups()
        directive = (directive or "").strip().upper()
        desc = (desc or "").strip() or "#" + (number or "?")
        if directive.startswith("SKIP"):
            skipped += 1
        elif directive.startswith("TODO"):
            if verdict == "ok":
                passed += 1
            else:
                skipped += 1
        elif verdict == "ok":
            passed += 1
        else:
            failed += 1
            failing.append(desc)
    return passed, failed, skipped, failing


def add_meson(tally, path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.strip()]
    except OSError:
        return
    txt_log = re.sub(r"\.json$", ".txt", path)
    for ln in lines:
        try:
            t = json.loads(ln)
        except ValueError:
            tally.add("fail", "meson: unreadable line in " + path, path)
            continue
        name = t.get("name", "?")
        result = t.get("result", "ERROR")
        p, f, s, failing = count_tap(t.get("stdout"))
        if p + f + s == 0:
            status = "pass" if result in MESON_OK else "skip" if result == "SKIP" else "fail"
            tally.add(status, f"{name} ({result}, exit {t.get('returncode')})", txt_log)
            continue
        tally.passed += p
        tally.skipped += s
        for desc in failing:
            tally.add("fail", f"{name}: {desc}", txt_log)
        if result not in MESON_OK and result != "SKIP" and f == 0:
            tally.add("fail", f"{name} ({result}, exit {t.get('returncode')})", txt_log)


def add_junit(tally, path, required, log_hint):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        if required:
            tally.add("fail", f"pytest: no usable report {path} ({e.__class__.__name__})", log_hint)
        return
    cases = list(root.iter("testcase"))
    if not cases and required:
        # A collection error with nothing collected still writes testsuite
        # attributes; trust them rather than report nothing.
        errors = sum(int(s.get("errors", 0)) + int(s.get("failures", 0)) for s in root.iter("testsuite"))
        if errors:
            tally.add("fail", "pytest: errors outside any test (collection?)", log_hint)
    # pytest writes a second <testcase> for a test whose teardown failed after
    # its call: one test, one verdict, the worst of its entries.
    verdicts = {}
    for c in cases:
        cls = c.get("classname", "")
        name = f"{cls}::{c.get('name')}" if cls else c.get("name", "?")
        if c.find("failure") is not None or c.find("error") is not None:
            v = "fail"
        elif c.find("skipped") is not None:
            v = "skip"
        else:
            v = "pass"
        old = verdicts.get(name)
        if old is None or RANK[v] > RANK[old]:
            verdicts[name] = v
    for name, v in verdicts.items():
        tally.add(v, name, log_hint)


def add_results(tally, path):
    try:
        with open(path, encoding="utf-8") as f:
            rows = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    except OSError:
        return
    for row in rows:
        name, status = row[0], row[1] if len(row) > 1 else "fail"
        log = row[2] if len(row) > 2 else ""
        tally.add(status if status in ("pass", "fail", "skip") else "fail", name, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meson-log")
    ap.add_argument("--junit")
    ap.add_argument("--junit-required", action="store_true")
    ap.add_argument("--junit-log", default="", help="where pytest's own output was kept")
    ap.add_argument("--results")
    a = ap.parse_args()

    tally = Tally()
    if a.results:
        add_results(tally, a.results)
    if a.meson_log:
        add_meson(tally, a.meson_log)
    if a.junit:
        add_junit(tally, a.junit, a.junit_required, a.junit_log or a.junit)

    if tally.failures:
        print(f"\nFailed ({len(tally.failures)}):")
        for name, log in tally.failures:
            print(f"  FAIL {name}" + (f"  [log: {log}]" if log else ""))
        print()
    line = f"{tally.passed} passed, {tally.failed} failed"
    if tally.skipped:
        line += f", {tally.skipped} skipped"
    print(line)
    sys.stdout.flush()
    return 1 if tally.failed or tally.passed + tally.skipped == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
