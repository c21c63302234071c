"""End-to-end fixtures: the real release binaries, the real SDKs.

Every test that uses the `stack` fixture gets its own mock upstream
(`mock-gemini --listen 127.0.0.1:0`) and its own gemgate (`gemgate --config FILE`)
on free loopback ports, with two pool keys whose values are random and distinctive.
At teardown the stack checks key hygiene (SPEC §7: a real key's value never appears in
a log line, a response header or a body; SPEC §2: the upstream gets a pool key and
never the client's credential) and gemgate's own response headers, then kills both
processes, whatever happened in the test.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import pytest

try:  # the SDKs of this generation ship httpx2; older ones ship httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TOKEN = "client-token-xyz"
MODEL = "gemini-2.5-flash"
KEY_IDS = ("key-a", "key-b")

READY_TIMEOUT = 20.0
MOCK_START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# Loopback only: never let an HTTP(S)_PROXY in the environment catch our requests.
_no_proxy = [p for p in os.environ.get("NO_PROXY", "").split(",") if p]
for host in ("127.0.0.1", "localhost"):
    if host not in _no_proxy:
        _no_proxy.append(host)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(_no_proxy)


# --------------------------------------------------------------------------- binaries


def target_dir() -> Path:
    t = os.environ.get("CARGO_TARGET_DIR")
    if not t:
        return ROOT / "target"
    p = Path(t)
    return p if p.is_absolute() else ROOT / p


def _binary(name: str, env_override: str) -> Path:
    override = os.environ.get(env_override)
    path = Path(override) if override else target_dir() / "release" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"{name} release binary missing: run scripts/test, or cargo build --release "
            f"--workspace --bins first ({path} not found; {env_override} may name another "
            f"binary)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def gemgate_bin() -> Path:
    return _binary("gemgate", "E2E_GEMGATE_BIN")


@pytest.fixture(scope="session")
def mock_bin() -> Path:
    return _binary("mock-gemini", "E2E_MOCK_BIN")


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_client(**kw: Any) -> "httpx.Client":
    """A plain HTTP client for requests where the test needs status and headers."""
    kw.setdefault("timeout", 30.0)
    return httpx.Client(trust_env=False, **kw)


def _die_with_parent() -> None:
    """In the child: SIGKILL when pytest dies, so no gemgate or mock outlives a crashed run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; teardown kills them anyway
        pass


class Proc:
    """A child process in its own session whose output goes to a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: Optional[dict] = None,
                 capture_first_line: bool = False):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab", buffering=0)
        self.first_line: Optional[str] = None
        self._first_line_ready = threading.Event()
        self._pump: Optional[threading.Thread] = None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_first_line else self._log,
            stderr=self._log,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if capture_first_line:
            self._pump = threading.Thread(target=self._pump_stdout, daemon=True)
            self._pump.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        first = True
        for line in iter(self.proc.stdout.readline, b""):
            if first:
                self.first_line = line.decode("utf-8", "replace").strip()
                self._first_line_ready.set()
                first = False
            try:
                self._log.write(line)
            except ValueError:  # log closed at teardown
                break
        self._first_line_ready.set()

    def wait_first_line(self, timeout: float) -> Optional[str]:
        self._first_line_ready.wait(timeout)
        return self.first_line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bound; always reaps."""
        if self.alive():
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass
            if self.wait(STOP_TIMEOUT) is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(STOP_TIMEOUT)
        if self._pump is not None:
            self._pump.join(timeout=2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""


def gate_config(gate_port: int, admin_port: int, mock_url: str, extra: str = "") -> str:
    return (
        f"listen: 127.0.0.1:{gate_port}\n"
        f"upstream: {{ base_url: {mock_url} }}\n"
        f"admin: {{ listen: 127.0.0.1:{admin_port} }}\n"
        "pools:\n"
        "  default:\n"
        "    keys:\n"
        "      - { id: key-a, key: { env: E2E_KEY_A } }\n"
        "      - { id: key-b, key: { env: E2E_KEY_B } }\n"
        f"{extra}"
    )


def start_mock(mock_bin: Path, log_path: Path) -> tuple[Proc, str]:
    proc = Proc([str(mock_bin), "--listen", "127.0.0.1:0"], log_path, capture_first_line=True)
    line = proc.wait_first_line(MOCK_START_TIMEOUT)
    prefix = "mock-gemini listening on "
    if not line or not line.startswith(prefix):
        proc.stop()
        pytest.fail(
            f"mock-gemini did not print '{prefix}http://ADDR' as its first line within "
            f"{MOCK_START_TIMEOUT}s (got {line!r}). Its log:\n{proc.log_text()[-4000:]}",
            pytrace=False,
        )
    url = line[len(prefix):].strip().rstrip("/")
    return proc, url


# --------------------------------------------------------------------------- the stack


class Stack:
    """One mock upstream and one gemgate in front of it."""

    def __init__(self, tmp: Path, gemgate_bin: Path, mock_bin: Path, log_format: str = "text"):
        self.tmp = tmp
        self.gemgate_bin = gemgate_bin
        self.key_a = "e2e-secret-" + secrets.token_hex(16)
        self.key_b = "e2e-secret-" + secrets.token_hex(16)
        self.seen: list[str] = []  # every response header/body text a test saw
        self.gate_responses: list[tuple[str, int, dict]] = []  # (url, status, headers)
        self.expect_upstream_traffic = True
        self.mock: Optional[Proc] = None
        self.gate: Optional[Proc] = None

        self.mock, self.mock_url = start_mock(mock_bin, tmp / "mock.log")
        try:
            self._start_gate(tmp, gemgate_bin, log_format)
        except BaseException:
            self.close()
            raise

    def _start_gate(self, tmp: Path, gemgate_bin: Path, log_format: str) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.config_path = tmp / "gemgate.yaml"
        self.config_path.write_text(gate_config(self.port, self.admin_port, self.mock_url))
        self.log_path = tmp / "gemgate.log"
        argv = [str(gemgate_bin), "--config", str(self.config_path)]
        if log_format == "json":
            argv += ["--log-format", "json"]
        self.gate = Proc(argv, self.log_path, env=self.env())
        self._wait_ready()

    # -- setup

    def env(self) -> dict:
        env = dict(os.environ)
        env["E2E_KEY_A"] = self.key_a
        env["E2E_KEY_B"] = self.key_b
        env.setdefault("RUST_BACKTRACE", "1")
        for k in ("GEMINI_API_KEYS", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMGATE_CONFIG"):
            env.pop(k, None)
        return env

    def _wait_ready(self) -> None:
        assert self.gate is not None
        last = "no answer"
        deadline = time.monotonic() + READY_TIMEOUT
        with raw_client(timeout=2.0) as c:
            while time.monotonic() < deadline:
                if not self.gate.alive():
                    last = f"gemgate exited with code {self.gate.proc.returncode}"
                    break
                try:
                    r = c.get(self.admin_url + "/readyz")
                    if r.status_code == 200:
                        return
                    last = f"/readyz answered {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    last = f"/readyz: {type(e).__name__}: {e}"
                time.sleep(0.1)
        self.close()
        pytest.fail(
            f"gemgate did not become ready at {self.admin_url}/readyz within "
            f"{READY_TIMEOUT}s ({last}).\nconfig:\n{self.config_path.read_text()}\n"
            f"gemgate log:\n{self.log_text()[-6000:]}",
            pytrace=False,
        )

    # -- observation

    def log_text(self) -> str:
        return self.gate.log_text() if self.gate else ""

    def record_response(self, response: "httpx.Response") -> None:
        """httpx event hook: remember gemgate's status and headers."""
        headers = {k.lower(): v for k, v in response.headers.items()}
        self.gate_responses.append((str(response.request.url), response.status_code, headers))
        self.seen.append(json.dumps(headers))

    def saw(self, *things: Any) -> None:
        """Remember a body (bytes, str, SDK object) that a test saw."""
        for t in things:
            if isinstance(t, bytes):
                self.seen.append(t.decode("utf-8", "replace"))
            elif isinstance(t, str):
                self.seen.append(t)
            elif hasattr(t, "model_dump_json"):
                self.seen.append(t.model_dump_json())
            else:
                self.seen.append(repr(t))

    def hooks(self) -> dict:
        return {"response": [self.record_response]}

    def mock_requests(self) -> Any:
        with raw_client(timeout=5.0) as c:
            r = c.get(self.mock_url + "/_mock/requests")
            assert r.status_code == 200, f"GET /_mock/requests: {r.status_code} {r.text[:300]}"
            return r.json()

    def mock_script(self, script: dict) -> None:
        with raw_client(timeout=5.0) as c:
            r = c.post(self.mock_url + "/_mock/script", json=script)
            assert r.status_code < 300, f"POST /_mock/script: {r.status_code} {r.text[:300]}"

    # -- clients

    def genai(self, api_version: Optional[str] = "v1beta", **http: Any):
        """google-genai pointed at gemgate. This SDK generation defaults to /v1 for the
        Gemini API; most calls here pin v1beta (as the Node SDK and most users do), and
        test_generate_content_with_base_url_from_env keeps the SDK's own default."""
        from google import genai
        from google.genai import types

        if api_version is not None:
            http["api_version"] = api_version
        return genai.Client(
            api_key=CLIENT_TOKEN,
            http_options=types.HttpOptions(
                base_url=self.url,
                timeout=30_000,
                retry_options=types.HttpRetryOptions(attempts=1),
                client_args={"event_hooks": self.hooks()},
                **http,
            ),
        )

    def openai(self):
        import openai

        return openai.OpenAI(
            api_key=CLIENT_TOKEN,
            base_url=self.url + "/v1beta/openai/",
            max_retries=0,
            timeout=30.0,
            http_client=openai.DefaultHttpxClient(event_hooks=self.hooks(), trust_env=False),
        )

    def raw(self, **kw: Any) -> "httpx.Client":
        return raw_client(base_url=self.url, event_hooks=self.hooks(), **kw)

    # -- teardown checks

    def check_hygiene(self) -> None:
        problems: list[str] = []
        keys = {"E2E_KEY_A": self.key_a, "E2E_KEY_B": self.key_b}

        log = self.log_text()
        for name, value in keys.items():
            if value in log:
                problems.append(f"the value of {name} appears in gemgate's log ({self.log_path})")
            for i, text in enumerate(self.seen):
                if value in text:
                    problems.append(
                        f"the value of {name} appears in a response the test saw: {text[:300]!r}"
                    )
                    break

        for url, status, headers in self.gate_responses:
            where = f"{status} {url}"
            if not headers.get("x-request-id"):
                problems.append(f"no x-request-id header on gemgate's response {where}")
            if 200 <= status < 300 and headers.get("x-gemgate-cache") != "hit":
                kid = headers.get("x-gemgate-key")
                if kid not in KEY_IDS:
                    problems.append(
                        f"x-gemgate-key is {kid!r} on {where}, expected one of {KEY_IDS}"
                    )

        if self.expect_upstream_traffic:
            try:
                recorded = json.dumps(self.mock_requests())
            except Exception as e:  # noqa: BLE001 - reported below
                problems.append(f"could not read the mock's recorded requests: {e}")
            else:
                if self.key_a not in recorded and self.key_b not in recorded:
                    problems.append(
                        "the mock upstream never received a pool key (E2E_KEY_A/E2E_KEY_B) "
                        f"in its recorded requests: {recorded[:600]}"
                    )
                if CLIENT_TOKEN in recorded:
                    problems.append(
                        f"the client token {CLIENT_TOKEN!r} reached the upstream: "
                        f"{recorded[:600]}"
                    )

        if problems:
            pytest.fail(
                "key hygiene / gemgate headers:\n  - " + "\n  - ".join(problems)
                + f"\ngemgate log tail:\n{log[-3000:]}",
                pytrace=False,
            )

    def close(self) -> None:
        for p in (self.gate, self.mock):
            if p is not None:
                p.stop()


def _make_stack(request, tmp_path, gemgate_bin, mock_bin, log_format):
    stack = Stack(tmp_path, gemgate_bin, mock_bin, log_format=log_format)
    try:
        yield stack
    finally:
        rep = getattr(request.node, "rep_call", None)
        failed_before = rep is not None and rep.failed
        try:
            if not failed_before:
                stack.check_hygiene()
        finally:
            stack.close()
            if failed_before:
                print(f"\n--- gemgate log ({stack.log_path}) ---\n{stack.log_text()[-6000:]}")


@pytest.fixture
def stack(request, tmp_path, gemgate_bin, mock_bin):
    yield from _make_stack(request, tmp_path, gemgate_bin, mock_bin, "text")


@pytest.fixture
def json_stack(request, tmp_path, gemgate_bin, mock_bin):
    yield from _make_stack(request, tmp_path, gemgate_bin, mock_bin, "json")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


def sse_events(lines: Iterable[str]) -> list[str]:
    """The `data:` payloads of a text/event-stream, one per event."""
    events, cur = [], []
    for line in lines:
        if line.startswith("data:"):
            cur.append(line[5:].lstrip())
        elif line == "" and cur:
            events.append("\n".join(cur))
            cur = []
    if cur:
        events.append("\n".join(cur))
    return events
