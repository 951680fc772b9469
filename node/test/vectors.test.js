'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const kw = require('..');
const { vectors } = require('./helpers.js');

test('JWT vectors reproduce byte for byte', () => {
  const v = vectors('jwt.json').vectors;
  assert.ok(v.length > 0);
  for (const c of v) {
    assert.equal(kw.signJwt(c.access_key, c.secret_key, { now: c.now }), c.token);
  }
});

test('response vectors parse to the expected fields', () => {
  const cases = vectors('responses.json').cases;
  assert.ok(cases.length > 0);
  for (const c of cases) {
    if (c.expect_error) {
      const x = c.expect_error;
      const err = kw.errorForApi(c.http_status, c.body.code, c.body.message || '');
      assert.ok(err instanceof kw.KlingError);
      assert.equal(err.kind, x.kind, c.name);
      assert.equal(err.klingCode, x.kling_code, c.name);
      assert.equal(err.httpStatus, x.http_status, c.name);
      assert.equal(err.retryable, x.retryable, c.name);
      continue;
    }
    const e = c.expect;
    const t = kw.parseTask(c.body);
    if ('id' in e) assert.equal(t.id, e.id, c.name);
    if ('status' in e) assert.equal(t.status, e.status, c.name);
    if ('status_msg' in e) assert.equal(t.statusMsg, e.status_msg, c.name);
    if ('external_task_id' in e) assert.equal(t.externalTaskId, e.external_task_id, c.name);
    if ('created_at_ms' in e) {
      assert.equal(t.createdAt == null ? null : t.createdAt.getTime(), e.created_at_ms, c.name);
    }
    if ('updated_at_ms' in e) {
      assert.equal(t.updatedAt == null ? null : t.updatedAt.getTime(), e.updated_at_ms, c.name);
    }
    if ('image_urls' in e) assert.deepEqual(t.images.map((i) => i.url), e.image_urls, c.name);
    if ('is_terminal' in e) assert.equal(t.isTerminal, e.is_terminal, c.name);
  }
});

test('error vectors map to the stable kinds', () => {
  const rows = vectors('errors.json').rows;
  assert.ok(rows.length > 0);
  for (const r of rows) {
    const e = kw.errorForApi(r.http_status, r.code, 'm');
    assert.ok(e instanceof kw.KlingError);
    assert.ok(e instanceof Error);
    assert.equal(e.kind, r.kind, `code ${r.code}`);
    assert.equal(e.code, r.kind);
    assert.equal(e.retryable, r.retryable, `retryable of ${r.code}`);
    assert.equal(e.klingCode, r.code);
    assert.equal(e.httpStatus, r.http_status);
    assert.ok(kw.ERROR_KINDS.includes(r.kind));
  }
});

test('signJwt with bad input throws KlingError', () => {
  assert.throws(() => kw.signJwt('', '', { now: 1 }), kw.KlingError);
});

test('parseCallback rejects garbage with KlingError', () => {
  assert.throws(() => kw.parseCallback('not json'), kw.KlingError);
});
