'use strict';
// Issue 9 security rows for Node: hostile ids are refused before any request; TLS needs the
// CA; signed callbacks from the emulator verify, tampered ones are refused.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const kw = require('..');
const { AK, SK, startMock, ctl, sleep } = require('./helpers.js');

const HOSTILE = [
  '../etc/passwd',
  '.',
  '..',
  '%2e%2e',
  '%2E%2E%2Fx',
  'abc?x=1',
  'abc#frag',
  'a/b',
  'a\\b',
  'abc\u2028def',
  'abc\u2029def',
  'abc\u0085def',
  'abc\u0000def',
  'abc def',
  '',
  'x'.repeat(10 * 1024),
];

const isInvalid = (e) => e instanceof kw.KlingError && e.kind === 'invalid_request';

test('hostile task ids and external ids are refused before any request', async (t) => {
  const mock = await startMock();
  t.after(() => mock.stop());
  const client = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0 });
  await ctl(mock.url, 'DELETE', '/requests');
  for (const id of HOSTILE) {
    const label = JSON.stringify(id.slice(0, 20));
    await assert.rejects(client.getTask(id), isInvalid, `getTask ${label}`);
    await assert.rejects(client.getTaskByExternalId(id), isInvalid, `getTaskByExternalId ${label}`);
    await assert.rejects(client.wait(id, { timeoutMs: 1000 }), isInvalid, `wait ${label}`);
    await assert.rejects(client.wait(id, { timeoutMs: 1000, onUpdate: () => {} }), isInvalid, `wait/onUpdate ${label}`);
    const [batch] = await client.getMany([id]);
    assert.ok(isInvalid(batch), `getMany ${label}`);
    await assert.rejects(
      (async () => {
        for await (const _ of client.watch([id], { timeoutMs: 1000 }));
      })(),
      isInvalid,
      `watch ${label}`,
    );
  }
  await sleep(100);
  assert.deepEqual((await ctl(mock.url, 'GET', '/requests')).requests, [], 'the emulator saw a request');
});

test('TLS: an untrusted certificate is refused; with the CA it works', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klingwatch-tls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const caPath = path.join(dir, 'ca.pem');
  const mock = await startMock(['--tls', '--ca-out', caPath]);
  t.after(() => mock.stop());
  assert.match(mock.url, /^https:/);
  const untrusted = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0 });
  await assert.rejects(untrusted.listTasks(), (e) => {
    assert.ok(e instanceof kw.KlingError && e.kind === 'connection' && e.httpStatus === null, String(e));
    // The core's cause chain says why: the certificate.
    assert.ok(e.cause instanceof Error);
    assert.match(e.cause.message, /certificate|issuer/i);
    return true;
  });
  const pem = fs.readFileSync(caPath);
  for (const caCert of [pem, pem.toString('utf8')]) {
    const trusted = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0, caCert });
    const created = await trusted.createImageTask({ prompt: 'over tls' });
    assert.equal((await trusted.getTask(created.id)).id, created.id);
  }
  assert.throws(() => new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, caCert: 'not a pem' }), (e) => e instanceof kw.KlingError && e.kind === 'config');
});

function sign(secret, id, ts, body) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return 'v1,' + crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
}

test('signed callbacks from the emulator verify; tampered ones are refused', async (t) => {
  const secret = 'whsec_' + crypto.randomBytes(24).toString('base64');
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const mock = await startMock(['--webhook-secret', secret, '--time-scale', '0.05']);
  t.after(() => mock.stop());
  const client = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0 });
  const created = await client.createImageTask({ prompt: 'call me back', callbackUrl: `http://127.0.0.1:${server.address().port}/cb` });
  const deadline = Date.now() + 15000;
  while (!received.some((r) => parseCallbackSafe(r.body)?.isTerminal) && Date.now() < deadline) await sleep(50);
  assert.ok(received.length > 0, 'no callback arrived');

  for (const { headers, body } of received) {
    // Node's own header object, a Headers instance and a Buffer body all verify.
    assert.equal(kw.verifyWebhook(secret, headers, body), true);
    assert.equal(kw.verifyWebhook(secret, new Headers(headers), Buffer.from(body)), true);
    const task = kw.parseCallback(body);
    assert.equal(task.id, created.id);
  }
  const last = received[received.length - 1];
  assert.equal(kw.parseCallback(last.body).status, 'succeed');

  const { headers, body } = last;
  const id = headers['webhook-id'];
  const now = Math.floor(Date.now() / 1000);
  const isSig = (e) => e instanceof kw.KlingError && e.kind === 'signature' && e.retryable === false;
  const otherSecret = 'whsec_' + crypto.randomBytes(24).toString('base64');
  const cases = {
    'wrong secret': [otherSecret, headers, body],
    'swapped body': [secret, headers, received.length > 1 ? received[0].body : body.replace('succeed', 'failed')],
    'truncated signature': [secret, { ...headers, 'webhook-signature': headers['webhook-signature'].slice(0, -6) }, body],
    'empty signature header': [secret, { ...headers, 'webhook-signature': '' }, body],
    'no headers': [secret, {}, body],
    'stale timestamp': [secret, { ...headers, 'webhook-timestamp': String(now - 3600), 'webhook-signature': sign(secret, id, now - 3600, body) }, body],
    'future timestamp': [secret, { ...headers, 'webhook-timestamp': String(now + 3600), 'webhook-signature': sign(secret, id, now + 3600, body) }, body],
  };
  for (const [name, args] of Object.entries(cases)) assert.throws(() => kw.verifyWebhook(...args), isSig, name);
  // The same re-signed headers inside the tolerance verify: the refusals above are about time.
  assert.equal(kw.verifyWebhook(secret, { ...headers, 'webhook-timestamp': String(now - 10), 'webhook-signature': sign(secret, id, now - 10, body) }, body), true);
  assert.throws(() => kw.verifyWebhook(secret, { ...headers, 'webhook-timestamp': String(now - 10), 'webhook-signature': sign(secret, id, now - 10, body) }, body, { toleranceSec: 5 }), isSig);
});

function parseCallbackSafe(body) {
  try {
    return kw.parseCallback(body);
  } catch (_) {
    return null;
  }
}
