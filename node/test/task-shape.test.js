'use strict';
// The native layer sends the core's snake_case task object; the Task constructor maps it to
// the camelCase properties of the public API. Every property is pinned here, in order.
const test = require('node:test');
const assert = require('node:assert/strict');
const kw = require('..');

const PROPS = [
  'id',
  'kind',
  'status',
  'statusMsg',
  'externalTaskId',
  'createdAt',
  'updatedAt',
  'createdAtMs',
  'updatedAtMs',
  'finalUnitDeduction',
  'images',
  'videos',
  'raw',
  'isTerminal',
];

test('a video task maps every field to camelCase', () => {
  const raw = {
    task_id: 'v-1',
    task_status: 'succeed',
    task_status_msg: 'ok',
    task_info: { external_task_id: 'ext-1' },
    created_at: 1722769557708,
    updated_at: 1722769560000,
    final_unit_deduction: '5',
    task_result: {
      videos: [
        { id: 'vid-a', url: 'https://example.invalid/a.mp4', watermark_url: 'https://example.invalid/a-wm.mp4', duration: '5.1' },
        { id: 'vid-b', url: 'https://example.invalid/b.mp4' },
      ],
    },
    snake_case_extra: { keep_me: true },
  };
  const t = kw.parseTask({ code: 0, message: 'SUCCEED', data: raw }, { kind: 'text_to_video' });
  assert.ok(t instanceof kw.Task);
  assert.deepEqual(Object.keys(t), PROPS);
  assert.equal(t.id, 'v-1');
  assert.equal(t.kind, 'text_to_video');
  assert.equal(t.status, 'succeed');
  assert.equal(t.statusMsg, 'ok');
  assert.equal(t.externalTaskId, 'ext-1');
  assert.ok(t.createdAt instanceof Date);
  assert.equal(t.createdAt.getTime(), 1722769557708);
  assert.equal(t.updatedAt.getTime(), 1722769560000);
  assert.equal(t.createdAtMs, 1722769557708);
  assert.equal(t.updatedAtMs, 1722769560000);
  assert.equal(t.finalUnitDeduction, '5');
  assert.deepEqual(t.images, []);
  assert.deepEqual(t.videos, [
    { id: 'vid-a', url: 'https://example.invalid/a.mp4', watermarkUrl: 'https://example.invalid/a-wm.mp4', durationS: 5.1 },
    { id: 'vid-b', url: 'https://example.invalid/b.mp4', watermarkUrl: null, durationS: null },
  ]);
  // raw is the server's object as received: its keys are never renamed.
  assert.deepEqual(t.raw, raw);
  assert.equal(t.isTerminal, true);
});

test('an image task maps images; missing fields are null', () => {
  const t = kw.parseTask({
    task_id: 'i-1',
    task_status: 'processing',
    task_result: {
      images: [
        { index: 0, url: 'https://example.invalid/0.png', watermark_url: 'https://example.invalid/0-wm.png' },
        { index: 1, url: 'https://example.invalid/1.png' },
      ],
    },
  });
  assert.deepEqual(Object.keys(t), PROPS);
  assert.equal(t.kind, 'image_generation');
  assert.equal(t.statusMsg, null);
  assert.equal(t.externalTaskId, null);
  assert.equal(t.createdAt, null);
  assert.equal(t.updatedAt, null);
  assert.equal(t.createdAtMs, null);
  assert.equal(t.updatedAtMs, null);
  assert.equal(t.finalUnitDeduction, null);
  assert.deepEqual(t.images, [
    { index: 0, url: 'https://example.invalid/0.png', watermarkUrl: 'https://example.invalid/0-wm.png' },
    { index: 1, url: 'https://example.invalid/1.png', watermarkUrl: null },
  ]);
  assert.deepEqual(t.videos, []);
  assert.equal(t.isTerminal, false);
});
