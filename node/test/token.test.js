'use strict';
// The token cache: 1,000 concurrent Promises sharing one client across a token expiry sign
// exactly one new token; the token options are validated by the core.
const test = require('node:test');
const assert = require('node:assert/strict');
const kw = require('..');
const { AK, SK, startMock, seed, sleep } = require('./helpers.js');

let mock;

test.before(async () => {
  mock = await startMock();
});
test.after(() => mock && mock.stop());

test('1,000 concurrent calls across a token expiry sign exactly one new token', async () => {
  // Lifetime 6 s, re-signed when < 3 s are left: the first token is due after 3 s, the next
  // one stays fresh for at least 2 s, far longer than the burst takes to start.
  const client = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, tokenTtlSec: 6, tokenRefreshMarginSec: 3, maxRetries: 0 });
  assert.equal(client.tokenSignatures, 0, 'nothing is signed before the first request');
  const id = await seed(mock.url, { status: 'succeed' });
  await client.getTask(id);
  assert.equal(client.tokenSignatures, 1);
  const first = await client.token();
  // A burst before the expiry reuses the cached token.
  await Promise.all(Array.from({ length: 50 }, () => client.getTask(id)));
  assert.equal(client.tokenSignatures, 1);

  await sleep(3100);
  const results = await Promise.all(Array.from({ length: 1000 }, () => client.getTask(id).catch((e) => e)));
  const failures = results.filter((r) => !(r instanceof kw.Task));
  assert.deepEqual(failures.map((e) => `${e.kind}: ${e.message}`).slice(0, 5), []);
  assert.equal(client.tokenSignatures, 2, 'exactly one new token for the whole burst');
  const second = await client.token();
  assert.notEqual(second, first);
  assert.equal(client.tokenSignatures, 2);
});

test('an API-key client signs nothing', async () => {
  const client = new kw.Client({ apiKey: 'klingwatch-test-api-key', baseUrl: mock.url, maxRetries: 0 });
  const id = await seed(mock.url, { status: 'succeed', api_key: 'klingwatch-test-api-key' });
  await Promise.all(Array.from({ length: 20 }, () => client.getTask(id)));
  assert.equal(client.tokenSignatures, 0);
});

test('token options are validated; tokenSignatures is read-only', () => {
  const base = { accessKey: AK, secretKey: SK, baseUrl: 'http://127.0.0.1:9' };
  const isConfig = (e) => e instanceof kw.KlingError && e.kind === 'config';
  assert.throws(() => new kw.Client({ ...base, tokenTtlSec: 0 }), isConfig);
  assert.throws(() => new kw.Client({ ...base, tokenTtlSec: 60, tokenRefreshMarginSec: 60 }), isConfig);
  assert.throws(() => new kw.Client({ ...base, tokenRefreshMarginSec: -1 }), isConfig);
  assert.throws(() => new kw.Client({ ...base, tokenTtlSec: 'long' }), isConfig);
  const c = new kw.Client({ ...base, tokenTtlSec: 120, tokenRefreshMarginSec: 10 });
  assert.throws(() => {
    c.tokenSignatures = 5;
  }, TypeError);
  assert.equal(c.tokenSignatures, 0);
});

test('the JWT carries the configured lifetime', async () => {
  const c = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: 'http://127.0.0.1:9', tokenTtlSec: 120, tokenRefreshMarginSec: 10 });
  const payload = JSON.parse(Buffer.from((await c.token()).split('.')[1], 'base64url').toString());
  assert.equal(payload.exp - payload.nbf, 125, 'exp = now + ttl, nbf = now - 5');
  assert.equal(payload.iss, AK);
});
