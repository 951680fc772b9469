'use strict';
// Secret-leak test (issue 9): with known SecretKey, API key and webhook-secret canaries, drive
// every error path (every error row of tests/faults.json for a status query, a batch, a wait
// and a create, with JWT and API-key clients; bad credentials; config, validation, signature,
// cancel and connection errors) in a child process run with RUST_LOG=trace, and assert that
// neither the canaries nor the full tokens appear in any message, String(), stack,
// util.inspect() or JSON.stringify() of the errors and clients, nor in the child's stdout or
// stderr.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');

const CANARY = {
  ak: 'kw-canary-access-key-3e1f',
  sk: 'kw-canary-SECRET-KEY-9b7d51c2a4e8',
  apiKey: 'kw-canary-API-KEY-6f0a2d94c3b1',
  wrongSk: 'kw-canary-WRONG-SECRET-77aa1c',
  wrongApiKey: 'kw-canary-WRONG-API-KEY-51de',
  webhook: 'whsec_' + Buffer.from('kw-canary-WEBHOOK-secret-0042').toString('base64'),
};
// The raw webhook secret bytes as text: must not leak either.
const WEBHOOK_RAW = 'kw-canary-WEBHOOK-secret-0042';

// ---------------------------------------------------------------------------------------------
// The child: drives the error paths and checks what it produced.
async function child() {
  const kw = require('..');
  const { ctl, seed } = require('./helpers.js');
  const url = process.env.KW_URL;
  const matrix = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'tests', 'faults.json'), 'utf8'));
  const texts = [];
  const kinds = {};
  const clients = [];
  const record = (label, e) => {
    if (!(e instanceof kw.KlingError)) throw new Error(`${label}: not a KlingError: ${util.inspect(e)}`);
    kinds[e.kind] = (kinds[e.kind] || 0) + 1;
    texts.push(e.message, String(e), e.stack, util.inspect(e, { showHidden: true, depth: 10 }), JSON.stringify(e));
  };
  const expectError = async (label, fn) => {
    let out;
    try {
      out = await fn();
    } catch (e) {
      record(label, e);
      return;
    }
    throw new Error(`${label}: expected an error, got ${util.inspect(out)}`);
  };
  const client = (o) => {
    const c = new kw.Client({ baseUrl: url, maxRetries: matrix.client.max_retries, timeoutMs: matrix.client.timeout_ms, ...o });
    clients.push(c);
    return c;
  };
  const jwt = client({ accessKey: CANARY.ak, secretKey: CANARY.sk });
  const api = client({ apiKey: CANARY.apiKey });
  const fromEnv = client({}); // KLING_ACCESS_KEY / KLING_SECRET_KEY of the child's env
  const tokens = [await jwt.token(), await api.token(), await fromEnv.token()];

  // Every error row of the fault matrix: query, batch and wait, for both credential kinds.
  const rows = matrix.rows.filter((r) => r.fault && r.expect.outcome === 'error');
  await Promise.all(
    rows.flatMap((row) =>
      [
        [jwt, { access_key: CANARY.ak }],
        [api, { api_key: CANARY.apiKey }],
      ].map(async ([c, owner]) => {
        const id = await seed(url, { status: 'processing', ...owner });
        const fault = { ...row.fault, match: { task_id: id } };
        if (typeof fault.retry_after === 'string' && fault.retry_after.startsWith('@+')) {
          fault.retry_after = new Date(Date.now() + 3000).toUTCString();
        }
        await ctl(url, 'POST', '/faults', fault);
        await expectError(`${row.name} get`, () => c.getImageTask(id));
        const [batch] = await c.getMany([id]);
        await expectError(`${row.name} batch`, async () => {
          if (batch instanceof Error) throw batch;
          return batch;
        });
        await expectError(`${row.name} wait`, () => c.wait(id, { timeoutMs: 1500, pollIntervalMs: 50, maxPollIntervalMs: 100, onUpdate: () => {} }));
      }),
    ),
  );
  await ctl(url, 'DELETE', '/faults');

  // Every error row for a create (one at a time: the fault matches the create path).
  const create = client({ accessKey: CANARY.ak, secretKey: CANARY.sk, maxRetries: 0 });
  for (const row of rows) {
    const fault = { ...row.fault, match: { method: 'POST', path_prefix: '/v1/images/generations' } };
    if (typeof fault.retry_after === 'string') fault.retry_after = '1';
    await ctl(url, 'POST', '/faults', fault);
    await expectError(`${row.name} create`, () => create.createImageTask({ prompt: 'leak test', n: 1 }));
    await ctl(url, 'DELETE', '/faults');
  }

  // Wrong credentials, for every call shape.
  const wrongSk = client({ accessKey: CANARY.ak, secretKey: CANARY.wrongSk, maxRetries: 0 });
  const wrongApi = client({ apiKey: CANARY.wrongApiKey, maxRetries: 0 });
  for (const c of [wrongSk, wrongApi]) {
    await expectError('auth get', () => c.getTask('abc'));
    await expectError('auth list', () => c.listTasks());
    await expectError('auth iter', async () => {
      for await (const _ of c.iterTasks());
    });
    await expectError('auth ext', () => c.getTaskByExternalId('ext-1'));
    await expectError('auth create', () => c.createImageTask({ prompt: 'x' }));
    await expectError('auth wait', () => c.wait('abc', { timeoutMs: 1000 }));
    await expectError('auth watch', async () => {
      for await (const _ of c.watch(['abc']));
    });
    const [e] = await c.getMany(['abc']);
    record('auth batch', e);
  }

  // Local errors: validation, config, signature, parse, cancel, connection, download.
  await expectError('invalid id', () => jwt.getTask('../x'));
  await expectError('invalid body', () => jwt.createTask('image_generation', { n: 1 }));
  await expectError('cancelled', () => jwt.getTask('abc', { signal: AbortSignal.abort() }));
  await expectError('unfinished download', async () => jwt.downloadResults(await jwt.getTask(await seed(url, { status: 'processing', access_key: CANARY.ak })), os.tmpdir()));
  const closed = client({ accessKey: CANARY.ak, secretKey: CANARY.sk, baseUrl: 'http://127.0.0.1:9', maxRetries: 0 });
  await expectError('connection', () => closed.getTask('abc'));
  const sync = (label, fn) => expectError(label, async () => fn());
  await sync('bad region', () => new kw.Client({ accessKey: CANARY.ak, secretKey: CANARY.sk, region: 'mars' }));
  await sync('bad url', () => new kw.Client({ accessKey: CANARY.ak, secretKey: CANARY.sk, baseUrl: 'ftp://example.invalid' }));
  await sync('bad header value', () => new kw.Client({ apiKey: `${CANARY.apiKey}\u0007x`, baseUrl: url }));
  await sync('wrong type', () => new kw.Client({ accessKey: CANARY.ak, secretKey: Buffer.from(CANARY.sk), baseUrl: url }));
  await sync('ttl', () => new kw.Client({ accessKey: CANARY.ak, secretKey: CANARY.sk, tokenTtlSec: -5 }));
  await sync('sign', () => kw.signJwt('', CANARY.sk, { now: 1 }));
  await sync('webhook', () =>
    kw.verifyWebhook(CANARY.webhook, { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' }, '{}'),
  );
  await sync('bad webhook secret', () => kw.verifyWebhook(`whsec_${CANARY.sk}`, {}, '{}'));
  await sync('callback', () => kw.parseCallback(`{"task_id": "${CANARY.ak}"`));

  for (const c of clients) {
    texts.push(util.inspect(c, { showHidden: true, depth: 10 }), String(c), JSON.stringify(c), util.format('%o', c));
  }
  const secrets = [CANARY.sk, CANARY.apiKey, CANARY.wrongSk, CANARY.wrongApiKey, CANARY.webhook, WEBHOOK_RAW, ...tokens];
  const leaks = [];
  for (const t of texts) for (const s of secrets) if (String(t).includes(s)) leaks.push(String(t).slice(0, 300));
  fs.writeFileSync(process.env.KW_TOKENS_OUT, JSON.stringify(tokens));
  // Everything inspected goes to stdout too, so that the parent's scan covers it.
  process.stdout.write(texts.join('\n') + '\n');
  process.stdout.write(`KW_RESULT ${JSON.stringify({ leaks, kinds, texts: texts.length })}\n`);
}

// ---------------------------------------------------------------------------------------------
// The parent: runs the child against an emulator that knows the canary credentials.
if (process.env.KW_LEAK_CHILD) {
  child().catch((e) => {
    process.stderr.write(`leak driver failed: ${e && e.stack}\n`);
    process.exit(3);
  });
} else {
  const { startMock } = require('./helpers.js');
  test('no secret or token leaks through any error path, inspect, JSON or log', { timeout: 180000 }, async (t) => {
    const mock = await startMock(['--access-key', CANARY.ak, '--secret-key', CANARY.sk, '--api-key', CANARY.apiKey]);
    t.after(() => mock.stop());
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klingwatch-leak-'));
    t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
    const tokensOut = path.join(tmp, 'tokens.json');
    const env = {
      ...process.env,
      KW_LEAK_CHILD: '1',
      KW_URL: mock.url,
      KW_TOKENS_OUT: tokensOut,
      RUST_LOG: 'trace',
      RUST_BACKTRACE: '1',
      KLING_ACCESS_KEY: CANARY.ak,
      KLING_SECRET_KEY: CANARY.sk,
    };
    delete env.NODE_TEST_CONTEXT;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [__filename], { env, maxBuffer: 1 << 26 }).catch((e) => {
      assert.fail(`the leak driver failed (${e.code}):\n${e.stderr}`);
    });
    const line = stdout.split('\n').find((l) => l.startsWith('KW_RESULT '));
    assert.ok(line, `no result line; stderr:\n${stderr}`);
    const result = JSON.parse(line.slice('KW_RESULT '.length));
    assert.deepEqual(result.leaks, []);
    // The run really went through the error paths (it cannot pass by doing nothing).
    const want = ['authentication', 'account', 'permission_denied', 'invalid_request', 'not_found', 'policy', 'rate_limited', 'server', 'timeout', 'connection', 'decode', 'config', 'wait_timeout', 'cancelled', 'signature'];
    for (const k of want) assert.ok(result.kinds[k] > 0, `no ${k} error was driven: ${JSON.stringify(result.kinds)}`);
    assert.ok(result.texts > 500, `only ${result.texts} texts checked`);
    const tokens = JSON.parse(fs.readFileSync(tokensOut, 'utf8'));
    assert.equal(tokens.length, 3);
    assert.equal(tokens[1], CANARY.apiKey, 'the API key is the bearer token');
    for (const s of [CANARY.sk, CANARY.apiKey, CANARY.wrongSk, CANARY.wrongApiKey, CANARY.webhook, WEBHOOK_RAW, tokens[0], tokens[2]]) {
      assert.ok(!stdout.includes(s), `stdout leaks ${s.slice(0, 12)}...`);
      assert.ok(!stderr.includes(s), `stderr (RUST_LOG=trace) leaks ${s.slice(0, 12)}...`);
    }
  });
}
