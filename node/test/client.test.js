'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const util = require('node:util');
const kw = require('..');
const { AK, SK, startMock, seed } = require('./helpers.js');

let mock;
let client;

test.before(async () => {
  mock = await startMock();
  client = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0 });
});
test.after(() => mock && mock.stop());

test('create then getTask against the emulator', async () => {
  const created = await client.createImageTask({ prompt: 'a lighthouse at dusk', n: 1 });
  assert.ok(created instanceof kw.Task);
  assert.ok(created.id);
  const t = await client.getTask(created.id, { kind: 'image_generation' });
  assert.equal(t.id, created.id);
  assert.equal(t.kind, 'image_generation');
  assert.ok(typeof t.status === 'string');
  assert.ok(t.createdAt === null || t.createdAt instanceof Date);
  const t2 = await client.getImageTask(created.id);
  assert.equal(t2.id, created.id);
});

test('unknown task rejects with KlingError not_found', async () => {
  await assert.rejects(client.getTask('no-such-task-123'), (e) => {
    assert.ok(e instanceof kw.KlingError, String(e));
    assert.equal(e.kind, 'not_found');
    assert.equal(e.code, 'not_found');
    assert.equal(e.retryable, false);
    return true;
  });
});

test('bad credentials reject with KlingError authentication', async () => {
  const bad = new kw.Client({ accessKey: 'nope', secretKey: 'nope', baseUrl: mock.url, maxRetries: 0 });
  await assert.rejects(bad.getTask('x'), (e) => e instanceof kw.KlingError && e.kind === 'authentication');
});

test('getMany returns tasks and errors in order', async () => {
  const a = await client.createImageTask({ prompt: 'one' });
  const b = await client.createImageTask({ prompt: 'two' });
  const out = await client.getMany([a.id, 'missing-1', b.id], { concurrency: 3 });
  assert.equal(out.length, 3);
  assert.ok(out[0] instanceof kw.Task);
  assert.equal(out[0].id, a.id);
  assert.ok(out[1] instanceof kw.KlingError);
  assert.equal(out[1].kind, 'not_found');
  // The error entry keeps the camelCase payload of every other KlingError.
  assert.equal(out[1].taskId, 'missing-1');
  assert.equal(typeof out[1].httpStatus, 'number');
  assert.equal(out[2].id, b.id);
});

test('getMany answers duplicate ids in every position, as separate equal objects', async () => {
  const a = await client.createImageTask({ prompt: 'dup' });
  const out = await client.getMany([a.id, 'missing-2', a.id, 'missing-2'], { concurrency: 2 });
  assert.equal(out.length, 4);
  assert.ok(out[0] instanceof kw.Task && out[2] instanceof kw.Task);
  assert.equal(out[0].id, a.id);
  assert.deepEqual(out[2], out[0]);
  assert.notEqual(out[2], out[0]);
  assert.notEqual(out[2].images, out[0].images);
  assert.notEqual(out[2].videos, out[0].videos);
  assert.ok(out[1] instanceof kw.KlingError && out[3] instanceof kw.KlingError);
  assert.equal(out[3].taskId, 'missing-2');
});

test('getMany over many chunks answers every position in input order', async () => {
  const ids = [];
  for (let i = 0; i < 300; i++) ids.push(await seed(mock.url, { status: 'succeed' }));
  const batch = [...ids, 'missing-c1', ...ids.slice(0, 50), 'bad/id'];
  const out = await client.getMany(batch, { concurrency: 32 });
  assert.equal(out.length, batch.length);
  batch.forEach((id, i) => {
    if (id === 'missing-c1') assert.equal(out[i].kind, 'not_found');
    else if (id === 'bad/id') assert.equal(out[i].kind, 'invalid_request');
    else assert.ok(out[i] instanceof kw.Task && out[i].id === id, `position ${i}`);
  });
  assert.deepEqual(out[301], out[0]);
  assert.notEqual(out[301], out[0]);
});

test('getMany tasks carry every field and the exact raw object, non-ASCII text included', async () => {
  // The raw texts travel beside the chunk's JSON as UTF-8 byte spans: multi-byte characters
  // before, inside and after each span must not shift the next one.
  const msgs = ['生成失败：内容不合规', 'ok "quoted" \\ back\\slash', 'émoji 🦊 end', ''];
  const seeded = [];
  for (const [i, msg] of msgs.entries()) {
    seeded.push(await seed(mock.url, { status: i === 0 ? 'failed' : 'succeed', status_msg: msg, watermark: i === 1, extra: { note: `第${i}号 ✓`, n: i } }));
  }
  const video = await seed(mock.url, { kind: 'text2video', status: 'succeed', duration: '5.1' });
  const images = await client.getMany(seeded, { concurrency: 4 });
  const [v] = await client.getMany([video], { kind: 'text_to_video' });
  for (const [i, t] of images.entries()) {
    const one = await client.getTask(seeded[i]);
    assert.ok(t instanceof kw.Task);
    assert.equal(t.statusMsg, msgs[i]);
    assert.equal(t.raw.task_status_msg, msgs[i]);
    assert.equal(t.raw.note, `第${i}号 ✓`);
    assert.deepEqual(t.raw, one.raw);
    assert.deepEqual({ ...t }, { ...one });
  }
  assert.equal(images[0].status, 'failed');
  assert.equal(images[0].isTerminal, true);
  assert.ok(images[1].images.length > 0 && images[1].images.every((im) => typeof im.watermarkUrl === 'string'));
  assert.ok(images[2].images.every((im) => im.watermarkUrl === null));
  assert.deepEqual(Object.keys(images[1].images[0]), ['index', 'url', 'watermarkUrl']);
  assert.equal(v.kind, 'text_to_video');
  assert.equal(v.videos.length, 1);
  assert.deepEqual(Object.keys(v.videos[0]), ['id', 'url', 'watermarkUrl', 'durationS']);
  assert.equal(v.videos[0].durationS, 5.1);
});

test('setting raw to undefined leaves a Task that downloadResults refuses with a KlingError', async () => {
  const id = await seed(mock.url, { status: 'succeed' });
  const [t] = await client.getMany([id]);
  t.raw = undefined;
  assert.equal(t.raw, undefined);
  await assert.rejects(client.downloadResults(t, '/tmp/kw-never'), (e) => e instanceof kw.KlingError && e.kind === 'invalid_request');
  t.raw = { task_id: id };
  assert.deepEqual(t.raw, { task_id: id });
});

test('a repeated id gets images of its own', async () => {
  const id = await seed(mock.url, { status: 'succeed', n: 2 });
  const [a, b] = await client.getMany([id, id]);
  assert.deepEqual(a, b);
  assert.notEqual(a.images, b.images);
  assert.notEqual(a.images[0], b.images[0]);
  a.images[0].url = 'changed';
  assert.notEqual(b.images[0].url, 'changed');
});

test('raw is parsed on first read and still behaves as an own property', async () => {
  const created = { id: await seed(mock.url, { status: 'succeed' }) };
  const [t] = await client.getMany([created.id]);
  assert.equal(Object.keys(t).includes('raw'), true);
  const text = JSON.stringify(t);
  assert.equal(JSON.parse(text).raw.task_id, created.id);
  assert.equal(t.raw.task_id, created.id);
  assert.equal(t.raw, t.raw, 'parsed once, then the same object');
  assert.equal({ ...t }.raw.task_id, created.id);
  assert.equal(structuredClone(t).raw.task_id, created.id);
  assert.match(util.inspect(t), new RegExp(`raw: \\{[^}]*task_id: '${created.id}'`));
  t.raw = { replaced: true };
  assert.deepEqual(t.raw, { replaced: true });
});

test('images and the dates of a getMany task are built on first read and behave as own properties', async () => {
  const id = await seed(mock.url, { status: 'succeed', n: 2 });
  const one = await client.getTask(id);
  const [t] = await client.getMany([id]);
  for (const name of ['images', 'createdAt', 'updatedAt', 'raw']) {
    const d = Object.getOwnPropertyDescriptor(t, name);
    assert.ok(d && d.enumerable, `${name} is an own enumerable property`);
  }
  // Serialised before any read: JSON.stringify, spread and structuredClone see the values.
  const json = JSON.parse(JSON.stringify(t));
  assert.equal(json.images.length, 2);
  assert.equal(json.createdAt, new Date(one.createdAtMs).toISOString());
  const clone = structuredClone(t);
  assert.ok(clone.createdAt instanceof Date);
  assert.equal(clone.createdAt.getTime(), one.createdAtMs);
  assert.deepEqual(clone.images, one.images);
  assert.deepEqual({ ...t }, { ...one });
  // Built once, then the same objects.
  assert.equal(t.images, t.images);
  assert.equal(t.createdAt, t.createdAt);
  assert.ok(t.updatedAt instanceof Date && t.updatedAt.getTime() === one.updatedAtMs);
  assert.deepEqual(t.images, one.images);
  // Settable like the other properties, and raw still reads after images was replaced.
  t.images = [];
  t.createdAt = null;
  assert.deepEqual(t.images, []);
  assert.equal(t.createdAt, null);
  assert.equal(t.raw.task_id, id);
});

test('listTasks returns Task objects', async () => {
  const ts = await client.listTasks({ page: 1, pageSize: 10 });
  assert.ok(Array.isArray(ts));
  for (const t of ts) assert.ok(t instanceof kw.Task);
});

test('wait can finish a task', async () => {
  const c = await client.createImageTask({ prompt: 'wait for me' });
  const t = await client.waitImageTask(c.id, { timeoutMs: 60000, pollIntervalMs: 50, maxPollIntervalMs: 200 });
  assert.equal(t.isTerminal, true);
});

test('abort cancels a wait with KlingError cancelled', async () => {
  const c = await client.createImageTask({ prompt: 'abort me' });
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), 100);
  // A huge poll interval: only the abort can end this quickly.
  await assert.rejects(
    client.wait(c.id, { timeoutMs: 600000, pollIntervalMs: 60000, maxPollIntervalMs: 60000, signal: ac.signal }),
    (e) => e instanceof kw.KlingError && e.kind === 'cancelled',
  );
  assert.ok(Date.now() - started < 10000);
});

test('an already-aborted signal rejects at once', async () => {
  await assert.rejects(client.getTask('x', { signal: AbortSignal.abort() }), (e) => e instanceof kw.KlingError && e.kind === 'cancelled');
});

test('the secret never shows in inspect or JSON', () => {
  const s = util.inspect(client, { showHidden: true, depth: 10 });
  assert.ok(!s.includes(SK), s);
  assert.ok(!JSON.stringify(client).includes(SK));
  assert.ok(!String(client).includes(SK));
});

test('token() resolves a JWT for the access key', async () => {
  const tok = await client.token();
  assert.equal(tok.split('.').length, 3);
});

test('bad options throw KlingError', () => {
  assert.throws(() => new kw.Client({ accessKey: AK, secretKey: SK, region: 'mars' }), kw.KlingError);
});

test('a Rust panic reaches JS as a KlingError, sync and async, and the process lives on', async () => {
  const check = (e) => {
    assert.ok(e instanceof kw.KlingError, String(e));
    assert.equal(e.kind, 'config');
    assert.match(e.message, /panic/);
    return true;
  };
  assert.throws(() => kw._panicForTests(false), check);
  await assert.rejects(kw._panicForTests(true), check);
  const t = await client.createImageTask({ prompt: 'still alive' });
  assert.ok(t.id);
});

test("a transport failure carries the core's cause chain as a standard cause", async () => {
  const closed = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: 'http://127.0.0.1:9', maxRetries: 0 });
  const e = await closed.getTask('abc').catch((x) => x);
  assert.ok(e instanceof kw.KlingError);
  assert.equal(e.kind, 'connection');
  assert.ok(e.cause instanceof Error);
  assert.match(e.cause.message, /connect/i);
  assert.match(util.inspect(e), /\[cause\]/);
  // A server answer has no underlying cause.
  const nf = await client.getTask('no-such-task-456').catch((x) => x);
  assert.equal(nf.kind, 'not_found');
  assert.equal(nf.cause, undefined);
});
