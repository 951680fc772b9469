'use strict';
// Aborting an in-flight getTask / getMany: the Promise rejects at once with kind 'cancelled',
// the Rust request is dropped (the emulator logs it as 499 right away) and nothing is retried.
const test = require('node:test');
const assert = require('node:assert/strict');
const kw = require('..');
const { AK, SK, startMock, ctl, seed, requestsFor, sleep } = require('./helpers.js');

let mock;

test.before(async () => {
  mock = await startMock();
});
test.after(() => mock && mock.stop());

// Every query of these ids hangs for 5 s; the client gives up after 1 s and would retry.
async function slowTask() {
  const id = await seed(mock.url, { status: 'succeed' });
  await ctl(mock.url, 'POST', '/faults', { fault: 'delay', times: 0, delay_ms: 5000, match: { task_id: id } });
  return id;
}

const newClient = () => new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 2, timeoutMs: 1000 });

function isCancelled(e) {
  assert.ok(e instanceof kw.KlingError, String(e));
  assert.equal(e.kind, 'cancelled');
  assert.equal(e.code, 'cancelled');
  assert.equal(e.retryable, false);
  return true;
}

test('without an abort the slow query is retried (the control of the tests below)', async () => {
  const id = await slowTask();
  const c = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 1, timeoutMs: 500 });
  await assert.rejects(c.getTask(id), (e) => e instanceof kw.KlingError && e.kind === 'timeout' && e.attempts === 2);
  await sleep(100);
  assert.equal((await requestsFor(mock.url, id)).length, 2);
});

test('aborting an in-flight getTask rejects quickly and drops the request', async () => {
  const id = await slowTask();
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(newClient().getTask(id, { signal: ac.signal }), isCancelled);
  const took = Date.now() - started;
  assert.ok(took < 900, `rejected after ${took} ms`);
  await sleep(200);
  const log = await requestsFor(mock.url, id);
  assert.deepEqual(log.map((r) => r.status), [499], 'the request was abandoned by the client');
  // Past the client timeout and the retry back-off: still a single request.
  await sleep(1800);
  assert.equal((await requestsFor(mock.url, id)).length, 1);
});

test('aborting an in-flight getMany rejects quickly and stops every query', async () => {
  const ids = [await slowTask(), await slowTask(), await slowTask(), await slowTask()];
  const client = newClient();
  // Warm the pool first: on a cold pool the first query opens the connection alone (the
  // core's cold-pool gate), and this test wants two queries in flight when it aborts.
  await client.getTask(await seed(mock.url, { status: 'succeed' }));
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(client.getMany(ids, { concurrency: 2, signal: ac.signal }), isCancelled);
  const took = Date.now() - started;
  assert.ok(took < 900, `rejected after ${took} ms`);
  await sleep(1800);
  const counts = [];
  for (const id of ids) counts.push((await requestsFor(mock.url, id)).length);
  // Two were in flight (concurrency 2) and were dropped; the other two never started.
  assert.deepEqual(counts.slice().sort(), [0, 0, 1, 1], `requests per id: ${counts}`);
  for (const id of ids) {
    for (const r of await requestsFor(mock.url, id)) assert.equal(r.status, 499);
  }
});

test('aborting an in-flight getTaskByExternalId rejects quickly', async () => {
  const ext = `ext-abort-${Date.now()}`;
  const id = await seed(mock.url, { status: 'succeed', external_task_id: ext });
  await ctl(mock.url, 'POST', '/faults', { fault: 'delay', times: 0, delay_ms: 5000, match: { task_id: ext } });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 150);
  const started = Date.now();
  await assert.rejects(newClient().getTaskByExternalId(ext, { signal: ac.signal }), isCancelled);
  assert.ok(Date.now() - started < 900);
  assert.ok(id);
});

test('slow calls never block the event loop', async () => {
  const ids = [];
  for (let i = 0; i < 20; i++) {
    const id = await seed(mock.url, { status: 'succeed' });
    await ctl(mock.url, 'POST', '/faults', { fault: 'delay', times: 1, delay_ms: 600, match: { task_id: id } });
    ids.push(id);
  }
  const c = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0, timeoutMs: 5000 });
  let last = Date.now();
  let worst = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = Date.now();
    worst = Math.max(worst, now - last);
    last = now;
    ticks += 1;
  }, 5);
  try {
    const started = Date.now();
    const [many, one] = await Promise.all([c.getMany(ids, { concurrency: 20 }), c.getTask(ids[0])]);
    assert.ok(Date.now() - started >= 550, 'the calls were slow');
    assert.ok(many.every((t) => t instanceof kw.Task));
    assert.equal(one.id, ids[0]);
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks >= 40, `only ${ticks} timer ticks during the calls`);
  assert.ok(worst < 150, `the event loop stalled for ${worst} ms`);
});
