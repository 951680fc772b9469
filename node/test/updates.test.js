'use strict';
// wait({onUpdate}), watch(), iterTasks() and getTaskByExternalId() against the emulator; the
// emulator's request log proves that leaving early, throwing or aborting stops the polling.
const test = require('node:test');
const assert = require('node:assert/strict');
const kw = require('..');
const { AK, SK, startMock, ctl, seed, requestsFor, sleep } = require('./helpers.js');

let mock;
let client;

test.before(async () => {
  mock = await startMock();
  client = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0 });
});
test.after(() => mock && mock.stop());

const setStatus = (id, status) => ctl(mock.url, 'POST', `/tasks/${id}/status`, { status });
const fast = { pollIntervalMs: 20, maxPollIntervalMs: 20, timeoutMs: 30000 };

/** Asserts that no request for `id` is logged any more (after in-flight ones settle). */
async function assertQuiet(id, ms = 600) {
  await sleep(150);
  const before = (await requestsFor(mock.url, id)).length;
  await sleep(ms);
  const after = (await requestsFor(mock.url, id)).length;
  assert.equal(after, before, `polling of ${id} went on: ${before} -> ${after} requests`);
  return after;
}

test('onUpdate sees every status change, in order, and may be async', async () => {
  const id = await seed(mock.url, { status: 'submitted' });
  const seen = [];
  const next = { submitted: 'processing', processing: 'succeed' };
  const done = await client.waitImageTask(id, {
    ...fast,
    onUpdate: async (u) => {
      assert.ok(u instanceof kw.TaskUpdate);
      assert.ok(u.task instanceof kw.Task);
      seen.push([u.previous, u.task.status]);
      // Drive the emulator from inside the callback: the next status only exists once
      // this (awaited) callback has run.
      if (next[u.task.status]) await setStatus(id, next[u.task.status]);
    },
  });
  assert.equal(done.status, 'succeed');
  assert.equal(done.isTerminal, true);
  assert.deepEqual(seen, [
    [null, 'submitted'],
    ['submitted', 'processing'],
    ['processing', 'succeed'],
  ]);
});

test('a throwing onUpdate rejects the wait with its error and stops the polling', async () => {
  const id = await seed(mock.url, { status: 'processing' });
  const boom = new Error('boom from onUpdate');
  let calls = 0;
  await assert.rejects(
    client.wait(id, {
      ...fast,
      onUpdate: () => {
        calls += 1;
        throw boom;
      },
    }),
    (e) => e === boom,
  );
  assert.equal(calls, 1);
  await assertQuiet(id);
});

test('a rejecting async onUpdate rejects the wait (no unhandled rejection)', async () => {
  const id = await seed(mock.url, { status: 'processing' });
  const unhandled = [];
  const onUnhandled = (r) => unhandled.push(r);
  process.on('unhandledRejection', onUnhandled);
  try {
    await assert.rejects(
      client.wait(id, {
        ...fast,
        onUpdate: async () => {
          await sleep(5);
          throw new RangeError('async boom');
        },
      }),
      RangeError,
    );
    await sleep(50);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  assert.deepEqual(unhandled, []);
  await assertQuiet(id);
});

test('onUpdate that is not a function is a KlingError', async () => {
  await assert.rejects(client.wait('abc', { onUpdate: 42 }), (e) => e instanceof kw.KlingError && e.kind === 'invalid_request');
});

test('wait with onUpdate: abort rejects with cancelled and stops polling', async () => {
  const id = await seed(mock.url, { status: 'processing' });
  const ac = new AbortController();
  const seen = [];
  const p = client.wait(id, { ...fast, signal: ac.signal, onUpdate: (u) => seen.push(u.task.status) });
  await sleep(200);
  ac.abort();
  await assert.rejects(p, (e) => e instanceof kw.KlingError && e.kind === 'cancelled');
  assert.deepEqual(seen, ['processing']);
  await assertQuiet(id);
});

test('watch yields each change of every task and ends when all are terminal', async () => {
  const a = await seed(mock.url, { status: 'submitted' });
  const b = await seed(mock.url, { status: 'processing' });
  const got = [];
  for await (const u of client.watch([a, b, a], { ...fast })) {
    assert.ok(u instanceof kw.TaskUpdate);
    got.push([u.task.id, u.previous, u.task.status]);
    if (u.previous === null) await setStatus(u.task.id, u.task.id === a ? 'succeed' : 'failed');
  }
  const of = (id) => got.filter((g) => g[0] === id).map((g) => g.slice(1));
  assert.deepEqual(of(a), [
    [null, 'submitted'],
    ['submitted', 'succeed'],
  ]);
  assert.deepEqual(of(b), [
    [null, 'processing'],
    ['processing', 'failed'],
  ]);
  assert.equal(got.length, 4);
});

test('leaving a watch early stops the Rust polling', async () => {
  const ids = [await seed(mock.url, { status: 'processing' }), await seed(mock.url, { status: 'processing' })];
  let seen = 0;
  let during = 0;
  for await (const u of client.watch(ids, { ...fast })) {
    assert.equal(u.task.status, 'processing');
    seen += 1;
    if (seen === 2) {
      // While the loop body runs, the watch keeps polling in the background.
      const c0 = (await requestsFor(mock.url, ids[0])).length;
      await sleep(400);
      during = (await requestsFor(mock.url, ids[0])).length - c0;
      break;
    }
  }
  assert.ok(during >= 3, `expected background polling, saw ${during} requests`);
  await assertQuiet(ids[0]);
  await assertQuiet(ids[1], 100);
});

test('aborting a watch rejects with cancelled and stops polling', async () => {
  const id = await seed(mock.url, { status: 'processing' });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  const seen = [];
  await assert.rejects(
    (async () => {
      for await (const u of client.watch([id], { ...fast, signal: ac.signal })) seen.push(u.task.status);
    })(),
    (e) => e instanceof kw.KlingError && e.kind === 'cancelled',
  );
  assert.deepEqual(seen, ['processing']);
  await assertQuiet(id);
  await assert.rejects(
    (async () => {
      for await (const _ of client.watch([id], { signal: AbortSignal.abort() }));
    })(),
    (e) => e instanceof kw.KlingError && e.kind === 'cancelled',
  );
});

test('watch: a task that fails for good throws its KlingError', async () => {
  await assert.rejects(
    (async () => {
      for await (const _ of client.watch(['no-such-task-777'], { ...fast }));
    })(),
    (e) => e instanceof kw.KlingError && e.kind === 'not_found' && e.taskId === 'no-such-task-777',
  );
  await assert.rejects(
    (async () => {
      for await (const _ of client.watch(['../etc'], { ...fast }));
    })(),
    (e) => e instanceof kw.KlingError && e.kind === 'invalid_request',
  );
});

test('watch: timeoutMs ends running tasks with wait_timeout', async () => {
  const id = await seed(mock.url, { status: 'processing' });
  const seen = [];
  await assert.rejects(
    (async () => {
      for await (const u of client.watch([id], { ...fast, timeoutMs: 300 })) seen.push(u.task.status);
    })(),
    (e) => e instanceof kw.KlingError && e.kind === 'wait_timeout' && e.taskId === id,
  );
  assert.deepEqual(seen, ['processing']);
});

test('iterTasks walks every page and stops at the first short page', async (t) => {
  const own = await startMock();
  t.after(() => own.stop());
  const c = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: own.url, maxRetries: 0 });
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await seed(own.url, { status: 'succeed' }));
  const got = [];
  for await (const task of c.iterTasks({ pageSize: 2 })) {
    assert.ok(task instanceof kw.Task);
    got.push(task.id);
  }
  assert.deepEqual([...got].sort(), [...ids].sort());
  const pages = (await ctl(own.url, 'GET', '/requests')).requests
    .filter((r) => r.method === 'GET' && r.path === '/v1/images/generations')
    .map((r) => new URLSearchParams(r.query).get('pageNum'));
  assert.deepEqual(pages, ['1', '2', '3']);

  // Leaving after the first task fetches no further page.
  await ctl(own.url, 'DELETE', '/requests');
  for await (const task of c.iterTasks({ pageSize: 2 })) {
    assert.ok(task.id);
    break;
  }
  await sleep(100);
  const after = (await ctl(own.url, 'GET', '/requests')).requests.filter((r) => r.path === '/v1/images/generations');
  assert.equal(after.length, 1);

  // A bad page size is the core's invalid_request, thrown by the iterator.
  await assert.rejects(
    (async () => {
      for await (const _ of c.iterTasks({ pageSize: 0 }));
    })(),
    (e) => e instanceof kw.KlingError && e.kind === 'invalid_request',
  );
});

test('getTaskByExternalId finds the task; unknown ids are not_found', async () => {
  const ext = `ext-${Date.now()}`;
  const id = await seed(mock.url, { status: 'succeed', external_task_id: ext });
  const t = await client.getTaskByExternalId(ext);
  assert.ok(t instanceof kw.Task);
  assert.equal(t.id, id);
  assert.equal(t.externalTaskId, ext);
  await assert.rejects(client.getTaskByExternalId('ext-missing-1', { kind: 'image_generation' }), (e) => e instanceof kw.KlingError && e.kind === 'not_found');
  await assert.rejects(client.getTaskByExternalId('../x'), (e) => e instanceof kw.KlingError && e.kind === 'invalid_request');
});
