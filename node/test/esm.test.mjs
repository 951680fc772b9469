// The package works through ESM `import` (named and default) and CJS `require` alike.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import kwDefault, { Client, KlingError, Task, TaskStatus, TaskUpdate, signJwt, parseCallback, verifyWebhook } from 'klingwatch';
import * as ns from '../index.mjs';

const require = createRequire(import.meta.url);

test('ESM named and default imports are the CJS exports', () => {
  const cjs = require('klingwatch');
  assert.equal(kwDefault, cjs);
  assert.equal(Client, cjs.Client);
  assert.equal(KlingError, cjs.KlingError);
  assert.equal(Task, cjs.Task);
  assert.equal(TaskUpdate, cjs.TaskUpdate);
  assert.equal(TaskStatus.SUCCEED, 'succeed');
  for (const name of Object.keys(cjs)) assert.equal(ns[name], cjs[name], `ESM export ${name}`);
  assert.deepEqual(Object.keys(ns).filter((n) => n !== 'default').sort(), Object.keys(cjs).sort());
});

test('ESM: functions work and throw KlingError', () => {
  assert.equal(signJwt('ak', 'sk', { now: 1700000000 }).split('.').length, 3);
  assert.throws(() => parseCallback('nope'), KlingError);
  assert.throws(() => verifyWebhook('whsec_AAAA', {}, '{}'), (e) => e instanceof KlingError && e.kind === 'signature');
  assert.throws(() => new Client({ accessKey: 'a', secretKey: 'b', region: 'mars' }), KlingError);
});
