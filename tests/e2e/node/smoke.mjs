// gemgate end-to-end smoke test with the official Gemini JavaScript SDK (@google/genai).
// Usage: GATE=http://127.0.0.1:PORT node smoke.mjs   (SMOKE_DIRECT=1: GATE is a bare upstream,
// so gemgate's response headers are not checked)
// Exits 0 when generateContent, generateContentStream and countTokens all work through
// gemgate; prints what failed and exits 1 otherwise. Bounded: every call has a timeout
// and the whole script gives up after 60 s.
import { GoogleGenAI } from '@google/genai';

const gate = process.env.GATE;
if (!gate) {
  console.error('smoke.mjs: set GATE to gemgate\'s URL, e.g. GATE=http://127.0.0.1:8080');
  process.exit(2);
}
const model = process.env.MODEL || 'gemini-2.5-flash';
const token = process.env.CLIENT_TOKEN || 'client-token-xyz';

const watchdog = setTimeout(() => {
  console.error('smoke.mjs: timed out after 60 s');
  process.exit(1);
}, 60_000);

const ai = new GoogleGenAI({
  apiKey: token,
  httpOptions: { baseUrl: gate, timeout: 30_000 },
});

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Print what the SDK saw (the calling test scans it for key values) and check gemgate's
// headers where the SDK exposes them.
function report(what, resp) {
  const headers = resp?.sdkHttpResponse?.headers;
  console.log(`${what} response: ${JSON.stringify(resp)}`);
  if (headers && process.env.SMOKE_DIRECT !== '1') {
    const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    check(h['x-request-id'], `${what}: no x-request-id header: ${JSON.stringify(h)}`);
    check(h['x-gemgate-cache'] === 'hit' || ['key-a', 'key-b'].includes(h['x-gemgate-key']),
      `${what}: x-gemgate-key is ${h['x-gemgate-key']}: ${JSON.stringify(h)}`);
  }
}

try {
  const r = await ai.models.generateContent({ model, contents: 'Hello from the Node SDK' });
  report('generateContent', r);
  check(typeof r.text === 'string' && r.text.length > 0, `generateContent: empty text: ${JSON.stringify(r)}`);
  console.log(`generateContent ok: ${JSON.stringify(r.text.slice(0, 60))}`);

  const stream = await ai.models.generateContentStream({ model, contents: 'Stream from the Node SDK' });
  let chunks = 0;
  let text = '';
  for await (const c of stream) {
    chunks += 1;
    report(`generateContentStream chunk ${chunks}`, c);
    text += c.text ?? '';
    check(chunks < 10_000, 'generateContentStream: runaway stream');
  }
  check(chunks >= 2, `generateContentStream: expected >= 2 chunks, got ${chunks}`);
  check(text.length > 0, 'generateContentStream: no text');
  console.log(`generateContentStream ok: ${chunks} chunks`);

  const t = await ai.models.countTokens({ model, contents: 'Count me from the Node SDK' });
  report('countTokens', t);
  check(Number.isInteger(t.totalTokens) && t.totalTokens > 0, `countTokens: ${JSON.stringify(t)}`);
  console.log(`countTokens ok: ${t.totalTokens}`);

  console.log('node smoke: all ok');
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.error(`node smoke FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}
