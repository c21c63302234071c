"""The command line (SPEC §1) and graceful shutdown (SPEC §7), on the release binary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from conftest import (
    CLIENT_TOKEN,
    MODEL,
    ROOT,
    free_port,
    gate_config,
    raw_client,
    sse_events,
)

CMD_TIMEOUT = 20


def run(argv, env=None):
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=CMD_TIMEOUT, env=env, cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
    )


def key_env():
    env = dict(os.environ)
    env["E2E_KEY_A"] = "e2e-secret-check-a"
    env["E2E_KEY_B"] = "e2e-secret-check-b"
    env.pop("GEMGATE_CONFIG", None)
    return env


def test_version_and_help(gemgate_bin):
    v = run([str(gemgate_bin), "--version"])
    assert v.returncode == 0, v.stderr
    assert "gemgate" in v.stdout.lower() or v.stdout.strip(), v.stdout
    h = run([str(gemgate_bin), "--help"])
    assert h.returncode == 0, h.stderr
    assert "check" in h.stdout and "--config" in h.stdout, h.stdout


def test_check_accepts_valid_config(gemgate_bin, tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(gate_config(free_port(), free_port(), "http://127.0.0.1:9"))
    r = run([str(gemgate_bin), "check", "--config", str(cfg)], env=key_env())
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "ok" in r.stdout.lower(), r.stdout
    for secret in ("e2e-secret-check-a", "e2e-secret-check-b"):
        assert secret not in r.stdout + r.stderr


def test_check_rejects_unknown_field(gemgate_bin, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        gate_config(free_port(), free_port(), "http://127.0.0.1:9", extra="bogus_field_e2e: 1\n")
    )
    r = run([str(gemgate_bin), "check", "--config", str(cfg)], env=key_env())
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"exit {r.returncode}\n{out}"
    assert "bogus_field_e2e" in out, f"the error does not name the field:\n{out}"


def test_check_rejects_unknown_nested_field(gemgate_bin, tmp_path):
    cfg = tmp_path / "bad-nested.yaml"
    text = gate_config(free_port(), free_port(), "http://127.0.0.1:9").replace(
        "upstream: {", "upstream: { bogus_nested_e2e: 3s,"
    )
    cfg.write_text(text)
    r = run([str(gemgate_bin), "check", "--config", str(cfg)], env=key_env())
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"exit {r.returncode}\n{out}"
    assert "bogus_nested_e2e" in out, f"the error does not name the field:\n{out}"


def test_run_refuses_invalid_config(gemgate_bin, tmp_path):
    """SPEC §1: exit non-zero with a reason naming the file and the field."""
    cfg = tmp_path / "bad-run.yaml"
    cfg.write_text(
        gate_config(free_port(), free_port(), "http://127.0.0.1:9", extra="bogus_field_e2e: 1\n")
    )
    r = run([str(gemgate_bin), "--config", str(cfg)], env=key_env())
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "bogus_field_e2e" in out and "bad-run.yaml" in out, out


def test_sigterm_lets_a_slow_stream_finish(stack):
    """SPEC §7: SIGTERM → /readyz fails, in-flight streams finish, exit 0."""
    stack.mock_script({"default": {"chunks": 5, "chunk_interval": "200ms"}})
    body = {"contents": [{"parts": [{"text": "a slow stream"}]}]}
    path = f"/v1beta/models/{MODEL}:streamGenerateContent"

    lines: list[str] = []
    first_event = threading.Event()
    errors: list[BaseException] = []
    status: list[int] = []

    def reader():
        try:
            with stack.raw(timeout=20.0) as c:
                with c.stream("POST", path, params={"alt": "sse"}, json=body,
                              headers={"x-goog-api-key": CLIENT_TOKEN}) as r:
                    status.append(r.status_code)
                    for line in r.iter_lines():
                        lines.append(line)
                        if line.startswith("data:"):
                            first_event.set()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            errors.append(e)
        finally:
            first_event.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert first_event.wait(15), "no stream event within 15 s"
    assert not errors, errors
    assert status == [200], status

    started = time.monotonic()
    stack.gate.signal(signal.SIGTERM)

    # /readyz fails at once (or the admin listener is already closed).
    time.sleep(0.1)
    if stack.gate.alive():
        try:
            with raw_client(timeout=1.0) as c:
                rz = c.get(stack.admin_url + "/readyz")
            assert rz.status_code != 200, "/readyz still 200 after SIGTERM"
        except Exception as e:  # connection refused / closed is fine
            if isinstance(e, AssertionError):
                raise

    # Stop accepting: a new connection to the proxy is refused (or answered 503).
    if stack.gate.alive():
        try:
            with raw_client(timeout=2.0) as c:
                late = c.post(f"{stack.url}/v1beta/models/{MODEL}:generateContent", json=body,
                              headers={"x-goog-api-key": CLIENT_TOKEN})
            assert late.status_code == 503, (
                f"gemgate accepted a new request after SIGTERM: {late.status_code}")
        except Exception as e:  # refused / reset is the expected outcome
            if isinstance(e, AssertionError):
                raise

    t.join(timeout=20)
    assert not t.is_alive(), "the stream did not end within 20 s of SIGTERM"
    assert not errors, f"the stream broke during shutdown: {errors[0]!r}"
    stack.saw("\n".join(lines))
    events = sse_events(lines)
    assert len(events) == 5, f"expected the 5 scripted chunks, got {len(events)}: {lines!r}"
    for e in events:
        json.loads(e)

    code = stack.gate.wait(15)
    assert code is not None, "gemgate still running 15 s after SIGTERM and the end of the stream"
    assert code == 0, f"gemgate exited with {code} after SIGTERM\n{stack.log_text()[-3000:]}"
    assert time.monotonic() - started < 15
