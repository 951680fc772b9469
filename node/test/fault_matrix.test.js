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

function check(row, op, { outcome, times }) {
  const e = row.expect;
  const tag = `${row.name} [${op}]`;
  if (times.length !== e.attempts) return `${tag}: emulator logged ${times.length} attempts, want ${e.attempts}`;
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  if (gaps.length && Math.min(...gaps) < (e.min_spacing_ms || 0)) {
    return `${tag}: attempts ${Math.min(...gaps)} ms apart, want >= ${e.min_spacing_ms}`;
  }
  if (e.outcome === 'ok') {
    if (outcome instanceof Error) return `${tag}: want a task, got ${outcome.kind}: ${outcome.message}`;
    if (outcome.status !== e.status) return `${tag}: status ${outcome.status}, want ${e.status}`;
    for (const [k, v] of Object.entries(row.seed_extra || {})) {
      if (JSON.stringify(outcome.raw[k]) !== JSON.stringify(v)) return `${tag}: undocumented field ${k} not kept in raw`;
    }
    return null;
  }
  if (!(outcome instanceof KlingError)) return `${tag}: want a KlingError, got ${JSON.stringify(outcome)}`;
  const got = [outcome.kind, outcome.klingCode ?? null, outcome.httpStatus ?? null, outcome.retryable, outcome.attempts];
  const want = [e.kind, e.kling_code, e.http_status, e.retryable, e.attempts];
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
