'use strict';
// downloadResults() through the core's download module, against the emulator's real PNGs.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const kw = require('..');
const { AK, SK, startMock, seed } = require('./helpers.js');

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let mock;
let client;
let dir;

test.before(async () => {
  mock = await startMock();
  client = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: mock.url, maxRetries: 0 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klingwatch-dl-'));
});
test.after(() => {
  if (mock) mock.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('downloadResults saves every image of a succeeded task as a whole PNG', async () => {
  const id = await seed(mock.url, { status: 'succeed', n: 3 });
  const task = await client.getTask(id);
  assert.equal(task.images.length, 3);
  const out = path.join(dir, 'nested', 'results');
  const paths = await client.downloadResults(task, out);
  assert.deepEqual(
    paths,
    task.images.map((img) => path.join(out, `${id}_${img.index}.png`)),
  );
  const bodies = paths.map((p) => fs.readFileSync(p));
  for (const b of bodies) {
    assert.ok(b.length > PNG_MAGIC.length);
    assert.deepEqual(b.subarray(0, 8), PNG_MAGIC);
  }
  assert.notDeepEqual(bodies[0], bodies[1], 'each result is its own file');
  // The bytes are those the result URL serves.
  const served = Buffer.from(await (await fetch(task.images[0].url)).arrayBuffer());
  assert.deepEqual(bodies[0], served);
  // Nothing half-written is left behind.
  assert.deepEqual(fs.readdirSync(out).filter((f) => f.includes('.part-')), []);
});

test('downloadResults of an unfinished task is invalid_request; of a failed one task_failed', async () => {
  const running = await client.getTask(await seed(mock.url, { status: 'processing' }));
  await assert.rejects(client.downloadResults(running, dir), (e) => e instanceof kw.KlingError && e.kind === 'invalid_request' && e.taskId === running.id);
  const failed = await client.getTask(await seed(mock.url, { status: 'failed', status_msg: 'nope' }));
  await assert.rejects(client.downloadResults(failed, dir), (e) => e instanceof kw.KlingError && e.kind === 'task_failed');
});

test('downloadResults needs a Task', async () => {
  await assert.rejects(client.downloadResults('abc', dir), (e) => e instanceof kw.KlingError && e.kind === 'invalid_request');
  await assert.rejects(client.downloadResults(null, dir), kw.KlingError);
});
