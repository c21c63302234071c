"""The official Python SDKs (google-genai, openai) used through gemgate, unchanged but for
the base URL: SPEC §2 "transparent"."""

from __future__ import annotations

import json
import time

import pytest

from conftest import CLIENT_TOKEN, KEY_IDS, MODEL, raw_client, sse_events

PROMPT = "Say hello to the end-to-end test."


def test_generate_content(stack):
    client = stack.genai()
    resp = client.models.generate_content(model=MODEL, contents=PROMPT)
    stack.saw(resp)
    assert resp.text, f"empty answer: {resp!r}"
    assert resp.candidates, f"no candidates: {resp!r}"
    assert stack.gate_responses, "the SDK's response never passed the event hook"


def test_generate_content_with_base_url_from_env(stack, monkeypatch):
    """SPEC: the SDKs read GOOGLE_GEMINI_BASE_URL, so that variable is often the whole change."""
    from google import genai
    from google.genai import types

    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", stack.url)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    client = genai.Client(
        api_key=CLIENT_TOKEN,
        http_options=types.HttpOptions(
            timeout=30_000,
            retry_options=types.HttpRetryOptions(attempts=1),
            client_args={"event_hooks": stack.hooks()},
        ),
    )
    resp = client.models.generate_content(model=MODEL, contents="via the env variable")
    stack.saw(resp)
    assert resp.text
    assert stack.gate_responses and stack.gate_responses[-1][0].startswith(stack.url)


def test_generate_content_stream(stack):
    client = stack.genai()
    chunks = []
    for chunk in client.models.generate_content_stream(model=MODEL, contents=PROMPT):
        stack.saw(chunk)
        chunks.append(chunk)
        assert len(chunks) < 10_000
    assert len(chunks) >= 2, f"expected at least 2 stream chunks, got {len(chunks)}: {chunks!r}"
    text = "".join(c.text or "" for c in chunks)
    assert text, "the stream carried no text"


def test_stream_is_relayed_as_it_arrives(stack):
    """SPEC §2: streams are forwarded chunk by chunk, never buffered whole. The mock spaces
    3 chunks 400 ms apart; buffered, they would all arrive at once."""
    stack.mock_script({"default": {"chunks": 3, "chunk_interval": "400ms"}})
    client = stack.genai()
    arrivals = []
    for chunk in client.models.generate_content_stream(model=MODEL, contents="slowly"):
        stack.saw(chunk)
        arrivals.append(time.monotonic())
    assert len(arrivals) == 3, f"expected the 3 scripted chunks, got {len(arrivals)}"
    spread = arrivals[-1] - arrivals[0]
    assert spread >= 0.6, f"chunks arrived within {spread:.3f}s: the stream was buffered"


def test_count_tokens(stack):
    client = stack.genai()
    resp = client.models.count_tokens(model=MODEL, contents=PROMPT)
    stack.saw(resp)
    assert resp.total_tokens is not None and resp.total_tokens > 0, repr(resp)


def test_embed_content(stack):
    client = stack.genai()
    resp = client.models.embed_content(model="gemini-embedding-001", contents=PROMPT)
    stack.saw(resp)
    assert resp.embeddings, repr(resp)
    assert resp.embeddings[0].values, repr(resp)
    assert all(isinstance(v, float) for v in resp.embeddings[0].values)


def test_file_upload_then_use_is_pinned_to_one_key(stack, tmp_path):
    """SPEC §2: uploads go through gemgate (x-goog-upload-url rewritten) and a file is pinned
    to the key that created it; the mock answers 403 when another key names the file."""
    from google.genai import types

    path = tmp_path / "notes.txt"
    path.write_text("gemgate e2e: the secret word is 'sidecar'.\n" * 20)
    client = stack.genai()
    f = client.files.upload(file=str(path), config=types.UploadFileConfig(mime_type="text/plain"))
    stack.saw(f)
    assert f.name and f.name.startswith("files/"), repr(f)
    assert f.uri, repr(f)

    # Every upload step must have come back through gemgate (rewritten upload URL).
    upload_steps = [u for (u, _, _) in stack.gate_responses if "/upload/" in u]
    assert upload_steps, f"no upload request went through gemgate: {stack.gate_responses!r}"
    assert all(u.startswith(stack.url) for (u, _, _) in stack.gate_responses)

    # Several uses, so a round-robin pool would hit the other key if gemgate did not pin.
    used = set()
    for i in range(4):
        resp = client.models.generate_content(
            model=MODEL,
            contents=[
                types.Part.from_uri(file_uri=f.uri, mime_type="text/plain"),
                f"What is the secret word? (attempt {i})",
            ],
        )
        stack.saw(resp)
        assert resp.text
        used.add(stack.gate_responses[-1][2].get("x-gemgate-key"))
    upload_key = {h.get("x-gemgate-key") for (u, _, h) in stack.gate_responses if "/upload/" in u}
    assert len(upload_key) == 1 and upload_key <= set(KEY_IDS), upload_key
    assert used == upload_key, f"upload went through {upload_key}, uses through {used}"

    got = client.files.get(name=f.name)
    stack.saw(got)
    assert got.name == f.name


def test_models_list_and_get(stack):
    """Requests that are not model calls (models list/get) are forwarded too."""
    client = stack.genai()
    models = []
    for m in client.models.list(config={"page_size": 50}):
        stack.saw(m)
        models.append(m.name)
        if len(models) >= 200:
            break
    assert models, "models.list returned nothing"
    got = client.models.get(model=MODEL)
    stack.saw(got)
    assert got.name and MODEL in got.name, repr(got)


def test_openai_chat_completion(stack):
    client = stack.openai()
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": PROMPT},
        ],
    )
    stack.saw(resp)
    assert resp.choices, repr(resp)
    assert resp.choices[0].message.content, repr(resp)


def test_openai_chat_completion_stream(stack):
    client = stack.openai()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    )
    chunks = []
    for chunk in stream:
        stack.saw(chunk)
        chunks.append(chunk)
        assert len(chunks) < 10_000
    assert len(chunks) >= 2, f"expected at least 2 stream chunks, got {chunks!r}"
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert text, "the stream carried no text"


def test_raw_request_headers_and_credential_swap(stack):
    """Each way a client may send its credential is stripped and replaced by a pool key."""
    path = f"/v1beta/models/{MODEL}:generateContent"
    with stack.raw() as c:
        for i, kwargs in enumerate((
            {"headers": {"x-goog-api-key": CLIENT_TOKEN}},
            {"params": {"key": CLIENT_TOKEN}},
            {"headers": {"authorization": f"Bearer {CLIENT_TOKEN}"}},
        )):
            # A distinct body each time, so no answer comes from gemgate's cache.
            body = {"contents": [{"parts": [{"text": f"raw request {i}"}]}]}
            r = c.post(path, json=body, **kwargs)
            stack.saw(r.content)
            assert r.status_code == 200, f"{kwargs}: {r.status_code} {r.text[:500]}"
            assert r.headers.get("x-request-id"), dict(r.headers)
            assert r.headers.get("x-gemgate-key") in KEY_IDS or (
                r.headers.get("x-gemgate-cache") == "hit"
            ), dict(r.headers)
            assert json.loads(r.content)["candidates"], r.text[:500]

        # What the upstream got for those three: the pool key as x-goog-api-key, no client
        # credential in any form, and the upstream's own Host.
        recorded = [r for r in stack.mock_requests() if r.get("path", "").endswith(
            ":generateContent")]
        assert len(recorded) >= 3, recorded
        mock_host = stack.mock_url.split("://", 1)[1]
        for rec in recorded[-3:]:
            hdrs = {}
            for name, value in rec["headers"]:
                hdrs.setdefault(name.lower(), []).append(value)
            assert hdrs.get("x-goog-api-key") in ([stack.key_a], [stack.key_b]), (
                f"upstream x-goog-api-key: {hdrs.get('x-goog-api-key')}")
            assert "authorization" not in hdrs, hdrs.get("authorization")
            assert "key=" not in (rec.get("query") or ""), rec.get("query")
            assert hdrs.get("host") == [mock_host], f"upstream Host: {hdrs.get('host')}"

        # A request id sent by the client is passed through.
        r = c.post(path, json={"contents": [{"parts": [{"text": "with id"}]}]},
                   headers={"x-goog-api-key": CLIENT_TOKEN, "x-request-id": "e2e-rid-1234"})
        stack.saw(r.content)
        assert r.status_code == 200, r.text[:500]
        assert r.headers.get("x-request-id") == "e2e-rid-1234", dict(r.headers)


def test_raw_sse_stream_arrives_in_chunks(stack):
    body = {"contents": [{"parts": [{"text": "stream me"}]}]}
    path = f"/v1beta/models/{MODEL}:streamGenerateContent"
    with stack.raw() as c:
        with c.stream("POST", path, params={"alt": "sse"}, json=body,
                      headers={"x-goog-api-key": CLIENT_TOKEN}) as r:
            assert r.status_code == 200, r.read()[:500]
            assert r.headers.get("content-type", "").startswith("text/event-stream"), dict(
                r.headers)
            lines = list(r.iter_lines())
    stack.saw("\n".join(lines))
    events = sse_events(lines)
    assert len(events) >= 2, f"expected ≥2 SSE events, got {lines!r}"
    for e in events:
        json.loads(e)


def test_raw_json_array_stream(stack):
    """streamGenerateContent without alt=sse answers a JSON array of chunks (SPEC §2)."""
    body = {"contents": [{"parts": [{"text": "json array stream"}]}]}
    path = f"/v1beta/models/{MODEL}:streamGenerateContent"
    with stack.raw() as c:
        r = c.post(path, json=body, headers={"x-goog-api-key": CLIENT_TOKEN})
    stack.saw(r.content)
    assert r.status_code == 200, r.text[:500]
    chunks = json.loads(r.content)
    assert isinstance(chunks, list) and len(chunks) >= 2, r.text[:500]
    assert all(ch.get("candidates") for ch in chunks), r.text[:500]


def test_json_log_format_has_request_line(json_stack):
    stack = json_stack
    client = stack.genai()
    resp = client.models.generate_content(model=MODEL, contents="log me")
    stack.saw(resp)
    rid = stack.gate_responses[-1][2].get("x-request-id")
    assert rid
    deadline_lines = []
    for _ in range(40):  # the access line may be written just after the response
        deadline_lines = [ln for ln in stack.log_text().splitlines() if rid in ln]
        if deadline_lines:
            break
        time.sleep(0.05)
    assert deadline_lines, f"request id {rid} not in the log:\n{stack.log_text()[-3000:]}"
    parsed = []
    for ln in deadline_lines:
        try:
            parsed.append(json.loads(ln))
        except ValueError:
            pass
    assert parsed, f"the line naming {rid} is not JSON with --log-format json: {deadline_lines!r}"


def test_admin_health_endpoints(stack):
    """/healthz and /readyz answer on the admin listener (SPEC §7)."""
    stack.expect_upstream_traffic = False
    with raw_client(base_url=stack.admin_url, timeout=5.0) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200


def test_admin_keys_name_ids_only(stack):
    """/admin/keys lists every key by id with its usage, never its value (SPEC §7)."""
    with stack.raw() as c:  # one proxied call, so there is usage to show
        r = c.post(f"/v1beta/models/{MODEL}:countTokens", headers={"x-goog-api-key": CLIENT_TOKEN},
                   json={"contents": [{"parts": [{"text": "count me"}]}]})
        stack.saw(r.content)
        assert r.status_code == 200, r.text[:300]
    with raw_client(base_url=stack.admin_url, timeout=5.0) as c:
        k = c.get("/admin/keys")
        stack.saw(k.text)
        assert k.status_code == 200, k.text[:300]
        keys = {entry["id"]: entry for entry in k.json()["keys"]}
        assert set(keys) == {"key-a", "key-b"}, k.text[:500]
        assert all(entry["state"] == "active" for entry in keys.values())
        used = [m for entry in keys.values() for m in entry["models"] if m["model"] == MODEL]
        assert sum(m["requests_today"] for m in used) == 1, k.text[:500]


def test_identical_requests_are_served_from_the_cache(stack):
    """The second identical call is a cache hit: no upstream call, no key (SPEC 5)."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=CLIENT_TOKEN, http_options=types.HttpOptions(base_url=stack.url, api_version="v1beta"))
    first = client.models.generate_content(model=MODEL, contents="the cache remembers this")
    second = client.models.generate_content(model=MODEL, contents="the cache remembers this")
    stack.saw(first.text, second.text)
    assert first.text == second.text
    generated = [r for r in stack.mock_requests() if r["path"].endswith(":generateContent")]
    assert len(generated) == 1, "the second call was answered by gemgate"
    with stack.raw() as c:
        body = {"contents": [{"role": "user", "parts": [{"text": "the cache remembers this"}]}]}
        r = c.post(f"/v1beta/models/{MODEL}:generateContent", headers={"x-goog-api-key": CLIENT_TOKEN}, json=body)
        stack.saw(r.content, dict(r.headers))
        assert r.status_code == 200, r.text[:300]
        assert r.headers["x-gemgate-cache"] in ("hit", "miss")
        again = c.post(f"/v1beta/models/{MODEL}:generateContent", headers={"x-goog-api-key": CLIENT_TOKEN}, json=body)
        stack.saw(again.content, dict(again.headers))
        assert again.headers["x-gemgate-cache"] == "hit"
        assert "x-gemgate-key" not in again.headers
