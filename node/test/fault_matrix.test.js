'use strict';
// The language-neutral fault matrix (tests/faults.json): the same rows and the same expected
// kinds, codes, attempts and spacing as the Rust and Python suites.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Client, KlingError } = require('..');
const { ROOT, AK, SK, startMock } = require('./helpers');

const MATRIX = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'faults.json'), 'utf8'));

async function ctl(url, method, p, body) {
  const res = await fetch(`${url}/__mock${p}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.ok, `control ${p}: ${res.status}`);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

function materialise(fault, taskId) {
  const f = { ...fault, match: { task_id: taskId } };
  if (typeof f.retry_after === 'string' && f.retry_after.startsWith('@+')) {
    f.retry_after = new Date(Date.now() + Number(f.retry_after.slice(2)) * 1000).toUTCString();
  }
  return f;
}

async function attemptTimes(url, taskId, want) {
  // The emulator logs a request when its response ends (499 when the client gave up).
  const deadline = Date.now() + 8000;
  for (;;) {
    const log = (await ctl(url, 'GET', '/requests')).requests;
    const times = log.filter((r) => r.path.includes(taskId)).map((r) => r.at_ms);
    if (times.length >= want || Date.now() > deadline) return times;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function runRow(url, row, batch) {
  let seeded = await ctl(url, 'POST', '/tasks', { status: row.seed_status || 'succeed', ...(row.seed_extra ? { extra: row.seed_extra } : {}) });
  if (seeded && typeof seeded.data === 'object' && seeded.data) seeded = seeded.data;
  const taskId = seeded.task_id;
  if (row.fault) await ctl(url, 'POST', '/faults', materialise(row.fault, taskId));
  const client = new Client({
    accessKey: AK,
    secretKey: SK,
    baseUrl: url,
    maxRetries: MATRIX.client.max_retries,
    timeoutMs: MATRIX.client.timeout_ms,
  });
  let outcome;
  if (batch) {
    const results = await client.getMany([taskId], { concurrency: 4 });
    assert.equal(results.length, 1);
    outcome = results[0];
  } else {
    outcome = await client.getImageTask(taskId).catch((e) => e);
  }
  return { outcome, times: await attemptTimes(url, taskId, row.expect.attempts) };
}

function check(row, op, { outcome, times }, key = 'expect') {
  const e = row[key];
  const tag = `${row.name} [${op}]`;
  if (e.attempts !== undefined && times.length !== e.attempts) {
    return `${tag}: emulator logged ${times.length} attempts, want ${e.attempts}`;
  }
  if (e.min_attempts !== undefined && times.length < e.min_attempts) {
    return `${tag}: emulator logged ${times.length} attempts, want >= ${e.min_attempts}`;
  }
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  if (gaps.length && Math.min(...gaps) < (e.min_spacing_ms || 0)) {
    return `${tag}: attempts ${Math.min(...gaps)} ms apart, want >= ${e.min_spacing_ms}`;
  }
  if (e.outcome === 'ok') {
    if (outcome instanceof Error) return `${tag}: want a task, got ${outcome.kind}: ${outcome.message}`;
    if (outcome.status !== e.status) return `${tag}: status ${outcome.status}, want ${e.status}`;
    for (const [k, v] of Object.entries(op === 'create' ? {} : row.seed_extra || {})) {
      if (JSON.stringify(outcome.raw[k]) !== JSON.stringify(v)) return `${tag}: undocumented field ${k} not kept in raw`;
    }
    return null;
  }
  if (!(outcome instanceof KlingError)) return `${tag}: want a KlingError, got ${JSON.stringify(outcome)}`;
  const got = [outcome.kind, outcome.klingCode ?? null, outcome.httpStatus ?? null, outcome.retryable];
  const want = [e.kind, e.kling_code, e.http_status, e.retryable];
  if (key === 'expect') {
    // a status query's error counts its own attempts
    got.push(outcome.attempts);
    want.push(e.attempts);
  }
  if (e.outcome_unknown !== undefined) {
    got.push(outcome.outcomeUnknown);
    want.push(e.outcome_unknown);
  }
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    return `${tag}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`;
  }
  if (outcome.code !== outcome.kind) return `${tag}: code ${outcome.code} != kind ${outcome.kind}`;
  return null;
}

test('fault matrix agrees with Rust and Python', async (t) => {
  const mock = await startMock();
  t.after(() => mock.stop());
  for (const op of ['get', 'batch']) {
    await t.test(op, async () => {
      const runs = await Promise.all(
        MATRIX.rows.map(async (row) => [row, await runRow(mock.url, row, op === 'batch')]),
      );
      const failures = runs.map(([row, obs]) => check(row, op, obs)).filter(Boolean);
      assert.deepEqual(failures, []);
    });
  }
});

async function seedRow(url, row) {
  let seeded = await ctl(url, 'POST', '/tasks', { status: row.seed_status || 'succeed', ...(row.seed_extra ? { extra: row.seed_extra } : {}) });
  if (seeded && typeof seeded.data === 'object' && seeded.data) seeded = seeded.data;
  return seeded.task_id;
}

function matrixClient(url) {
  return new Client({
    accessKey: AK,
    secretKey: SK,
    baseUrl: url,
    maxRetries: MATRIX.client.max_retries,
    timeoutMs: MATRIX.client.timeout_ms,
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('fault matrix: wait and create columns agree with Rust and Python', async (t) => {
  const mock = await startMock();
  t.after(() => mock.stop());
  const url = mock.url;
  await t.test('wait', async () => {
    const poll = MATRIX.client.wait_poll_ms;
    const runs = await Promise.all(MATRIX.rows.map(async (row) => {
      const taskId = await seedRow(url, row);
      if (row.fault) await ctl(url, 'POST', '/faults', materialise(row.fault, taskId));
      const outcome = await matrixClient(url)
        .wait(taskId, { timeoutMs: MATRIX.client.wait_timeout_ms, pollIntervalMs: poll, maxPollIntervalMs: poll })
        .catch((e) => e);
      await sleep(300); // requests in flight at the deadline are logged when they end
      const times = (await ctl(url, 'GET', '/requests')).requests
        .filter((r) => r.path.includes(taskId)).map((r) => r.at_ms);
      return check(row, 'wait', { outcome, times }, 'expect_wait');
    }));
    assert.deepEqual(runs.filter(Boolean), []);
  });
  await t.test('create', async () => {
    const client = matrixClient(url);
    const failures = [];
    // One row at a time: a create has no task id, so the fault matches every POST.
    for (const [n, row] of MATRIX.rows.entries()) {
      await ctl(url, 'DELETE', '/faults');
      await ctl(url, 'DELETE', '/requests');
      if (row.fault) {
        const f = materialise(row.fault, '');
        f.match = { method: 'POST', path_prefix: '/v1/images/generations' };
        await ctl(url, 'POST', '/faults', f);
      }
      const outcome = await client
        .createImageTask({ prompt: `fault matrix ${row.name}`, externalTaskId: `fm-node-${n}-${process.pid}-${Date.now()}` })
        .catch((e) => e);
      await ctl(url, 'DELETE', '/faults');
      await sleep(300);
      const times = (await ctl(url, 'GET', '/requests')).requests
        .filter((r) => r.method === 'POST' && r.path === '/v1/images/generations').map((r) => r.at_ms);
      const f = check(row, 'create', { outcome, times }, 'expect_create');
      if (f) failures.push(f);
    }
    assert.deepEqual(failures, []);
  });
});

test('the matrix covers every code of the error table', () => {
  const errors = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'vectors', 'errors.json'), 'utf8')).rows;
  const codes = new Set(MATRIX.rows.filter((r) => r.fault).map((r) => r.fault.code));
  for (const r of errors) assert.ok(codes.has(r.code), `code ${r.code} has no row`);
});
