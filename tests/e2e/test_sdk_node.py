"""The official JavaScript SDK (@google/genai) through gemgate: tests/e2e/node/smoke.mjs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import ROOT

NODE_DIR = ROOT / "tests" / "e2e" / "node"


def test_node_sdk_smoke(stack):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Node SDK test needs Node.js >= 20 "
                    "(Debian: apt-get install nodejs npm)", pytrace=False)
    if not (NODE_DIR / "node_modules" / "@google" / "genai").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules is missing: run scripts/test "
                    "(it runs npm ci there)", pytrace=False)
    env = dict(os.environ)
    env["GATE"] = stack.url
    for k in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        env.pop(k, None)
    try:
        r = subprocess.run([node, str(NODE_DIR / "smoke.mjs")], capture_output=True, text=True,
                           timeout=90, env=env, cwd=str(NODE_DIR), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"node smoke.mjs did not finish in 90 s: {e.stdout!r} {e.stderr!r}")
    stack.saw(r.stdout, r.stderr)
    assert r.returncode == 0, f"node smoke.mjs exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "node smoke: all ok" in r.stdout, r.stdout
