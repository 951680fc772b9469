'use strict';
// The JS face of klingwatch: a thin layer over the native addon (bindings/node). Every rule
// lives in the Rust core; this file converts options, tasks and errors.

const util = require('node:util');
const path = require('node:path');
const native = require('./native.js');

const ERROR_PREFIX = 'KLINGWATCH_ERROR:';
const DEFAULT_KIND = 'image_generation';

/** Every failure of klingwatch. `kind` (also `code`) is the stable core error kind. */
class KlingError extends Error {
  constructor(message, fields = {}) {
    super(message);
    this.name = 'KlingError';
    this.kind = fields.kind || 'invalid_request';
    this.code = this.kind;
    this.httpStatus = fields.httpStatus ?? null;
    this.klingCode = fields.klingCode ?? null;
    this.requestId = fields.requestId ?? null;
    this.taskId = fields.taskId ?? null;
    this.retryable = Boolean(fields.retryable);
    this.attempts = fields.attempts ?? 0;
    this.outcomeUnknown = Boolean(fields.outcomeUnknown);
    // The core's chain of underlying causes (transport, TLS, JSON), as a standard `cause`.
    if (typeof fields.cause === 'string' && fields.cause) {
      Object.defineProperty(this, 'cause', { value: new Error(fields.cause), writable: true, configurable: true, enumerable: false });
    }
  }

  static fromPayload(p) {
    return new KlingError(p.message, p);
  }
}

/** Turns anything the native layer throws into a KlingError. */
function toKlingError(err) {
  if (err instanceof KlingError) return err;
  const msg = err && typeof err.message === 'string' ? err.message : String(err);
  const at = msg.lastIndexOf(ERROR_PREFIX);
  if (at >= 0) {
    try {
      const e = KlingError.fromPayload(JSON.parse(msg.slice(at + ERROR_PREFIX.length)));
      if (err && err.stack) e.nativeStack = err.stack;
      return e;
    } catch (_) {
      /* fall through */
    }
  }
  // Argument conversion failures from napi (wrong types) are the caller's mistake.
  const e = new KlingError(msg, { kind: 'invalid_request' });
  e.cause = err;
  return e;
}

function call(fn) {
  try {
    return fn();
  } catch (err) {
    throw toKlingError(err);
  }
}

// Set in Task's static block (they need its private fields).
let RAW_PROPERTY;
let IMAGES_PROPERTY;
let rawTextOf;
/** What a Task has not built yet (a private field's value until first read). */
const PENDING = Symbol('pending');
/** Marks a `getMany` chunk row given to the Task constructor (see `taskOfRow`). */
const ROW = Symbol('row');
const dateOf = (ms) => (ms === null || ms === undefined ? null : new Date(ms));

/**
 * A Task as the JS face shows it. The native layer writes each task in this final camelCase
 * shape (`bindings/node`'s `JsTask`: the one mapping of the core's fields), so the constructor
 * only copies the properties: from an object, or from a `getMany` chunk row (`ChunkRow`: the
 * same fields as an array, in `JsTask`'s order). The server's object comes as JSON text
 * (`raw`) or, from `getMany`, as the byte span `rawStart..rawEnd` of its chunk's buffer, with
 * the images' JSON at `imagesStart..imagesEnd`; either way `raw` and `images` are parsed on
 * first read. Both are own enumerable properties in their place among the others
 * (Object.keys, JSON.stringify, spread, structuredClone and assert.deepEqual see their
 * values), settable like the rest.
 */
class Task {
  // `#buf` is the chunk's buffer (outside the JS heap) while `raw` or `images` is still to be
  // parsed from it, `#rawText` the server's object as a JSON string; `PENDING` marks what was
  // never read. A Task keeps its chunk's buffer (the texts of up to a few thousand tasks
  // answered in the same millisecond) until both were read: keeping a handful of tasks out of
  // a large batch keeps those buffers too.
  #buf;
  #rawText;
  #rawStart;
  #rawEnd;
  #raw;
  #imagesStart;
  #imagesEnd;
  #images;

  constructor(v, raws, row) {
    if (v === ROW) {
      // [positions, id, kind, status, isTerminal, statusMsg, externalTaskId, createdAtMs,
      //  updatedAtMs, finalUnitDeduction, videos, rawStart, rawEnd, imagesStart, imagesEnd]
      this.#buf = raws;
      this.#raw = PENDING;
      this.#rawStart = row[11];
      this.#rawEnd = row[12];
      this.#images = PENDING;
      this.#imagesStart = row[13];
      this.#imagesEnd = row[14];
      this.#fill(row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10]);
      return;
    }
    this.#images = v.images ?? [];
    if (typeof v.raw === 'string') {
      this.#raw = PENDING;
      this.#rawText = v.raw;
    } else {
      this.#raw = v.raw ?? {};
    }
    this.#fill(v.id, v.kind, v.status, v.isTerminal, v.statusMsg, v.externalTaskId, v.createdAtMs, v.updatedAtMs, v.finalUnitDeduction, v.videos);
  }

  /** The properties, in their order (`images` and `raw` as accessors of the fields set). */
  #fill(id, kind, status, isTerminal, statusMsg, externalTaskId, createdAtMs, updatedAtMs, finalUnitDeduction, videos) {
    const created = createdAtMs ?? null;
    const updated = updatedAtMs ?? null;
    this.id = id;
    this.kind = kind;
    this.status = status;
    this.statusMsg = statusMsg ?? null;
    this.externalTaskId = externalTaskId ?? null;
    this.createdAt = dateOf(created);
    this.updatedAt = dateOf(updated);
    this.createdAtMs = created;
    this.updatedAtMs = updated;
    this.finalUnitDeduction = finalUnitDeduction ?? null;
    Object.defineProperty(this, 'images', IMAGES_PROPERTY);
    this.videos = videos ?? [];
    Object.defineProperty(this, 'raw', RAW_PROPERTY);
    this.isTerminal = Boolean(isTerminal);
  }

  static {
    // The server's object as JSON text, while it was never read (undefined once parsed or
    // set).
    const textOf = (task) => {
      if (task.#raw !== PENDING) return undefined;
      return task.#rawText ?? task.#buf.toString('utf8', task.#rawStart, task.#rawEnd);
    };
    // The texts are let go once nothing is left to parse from them.
    const settle = (task) => {
      if (task.#raw !== PENDING && task.#images !== PENDING) {
        task.#buf = undefined;
        task.#rawText = undefined;
      }
    };
    RAW_PROPERTY = {
      enumerable: true,
      configurable: true,
      get() {
        const text = textOf(this);
        if (text !== undefined) {
          this.#raw = JSON.parse(text);
          settle(this);
        }
        return this.#raw;
      },
      set(value) {
        this.#raw = value;
        settle(this);
      },
    };
    IMAGES_PROPERTY = {
      enumerable: true,
      configurable: true,
      get() {
        if (this.#images === PENDING) {
          this.#images = JSON.parse(this.#buf.toString('utf8', this.#imagesStart, this.#imagesEnd));
          settle(this);
        }
        return this.#images;
      },
      set(value) {
        this.#images = value;
        settle(this);
      },
    };
    rawTextOf = (task) => {
      const text = textOf(task);
      if (text !== undefined) return text;
      return task.#raw == null ? undefined : JSON.stringify(task.#raw);
    };
  }

  /** Shows `raw` as its value (not as an accessor) in console.log and util.inspect. */
  [util.inspect.custom](depth, options, inspect) {
    if (depth < 0) return options.stylize('[Task]', 'special');
    return `Task ${inspect({ ...this }, options)}`;
  }
}

/**
 * The Task of a `getMany` chunk row; `fresh` gives it videos of its own (an id given twice
 * gets equal, separate objects; its images are parsed per Task anyway).
 */
const taskOfRow = (row, raws, fresh) =>
  new Task(ROW, raws, fresh ? [...row.slice(0, 10), row[10].map((x) => ({ ...x })), ...row.slice(11)] : row);

const taskOf = (text) => new Task(JSON.parse(text));

/** A status change: the task as now seen and the status before (null on first sight). */
class TaskUpdate {
  constructor(task, previous) {
    this.task = task;
    this.previous = previous ?? null;
  }
}

const updateOf = (text) => {
  const v = JSON.parse(text);
  return new TaskUpdate(new Task(v.task), v.previous);
};

const cancelledError = () => new KlingError('the operation was aborted', { kind: 'cancelled' });

/**
 * Runs `start(cancelId)` (a native promise). With an AbortSignal, a native cancel token is
 * made and cancelled on abort, so the Rust work stops (the future is dropped).
 */
async function withSignal(signal, start) {
  if (signal == null) {
    try {
      return await start(undefined);
    } catch (err) {
      throw toKlingError(err);
    }
  }
  if (signal.aborted) throw cancelledError();
  const id = native.cancelTokenNew();
  const onAbort = () => native.cancelTokenCancel(id);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await start(id);
  } catch (err) {
    throw toKlingError(err);
  } finally {
    signal.removeEventListener('abort', onAbort);
    native.cancelTokenDrop(id);
  }
}

/**
 * Iterates a native stream opened by `open(cancelId)`, converting each item with `convert`.
 * Ending the iteration early (break, return, throw) or aborting `signal` closes the native
 * stream, which stops its Rust work.
 */
async function* drain(signal, open, convert) {
  if (signal != null && signal.aborted) throw cancelledError();
  let id;
  let onAbort;
  if (signal != null) {
    id = native.cancelTokenNew();
    onAbort = () => native.cancelTokenCancel(id);
    signal.addEventListener('abort', onAbort, { once: true });
  }
  let stream;
  try {
    stream = call(() => open(id));
    for (;;) {
      let text;
      try {
        text = await stream.next();
      } catch (err) {
        throw toKlingError(err);
      }
      if (text == null) return;
      yield convert(text);
    }
  } finally {
    if (stream) stream.close();
    if (signal != null) {
      signal.removeEventListener('abort', onAbort);
      native.cancelTokenDrop(id);
    }
  }
}

function optString(name, v) {
  if (v == null) return undefined;
  if (typeof v !== 'string') throw new KlingError(`${name} must be a string`, { kind: 'config' });
  return v;
}

function optNumber(name, v) {
  if (v == null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new KlingError(`${name} must be a finite number`, { kind: 'config' });
  }
  return v;
}

function snake(key) {
  return key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

function toWire(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    out[snake(k)] = v;
  }
  return out;
}

const NATIVE = Symbol('klingwatch.native');

class Client {
  /**
   * @param {object} [options] accessKey, secretKey, apiKey, region, baseUrl, timeoutMs,
   *   maxRetries, caCert (PEM string or Buffer). Missing credentials and base URL come from
   *   KLING_ACCESS_KEY / KLING_SECRET_KEY / KLING_API_KEY / KLING_BASE_URL.
   */
  constructor(options = {}) {
    const o = options || {};
    // Types are checked here so that a wrong value never reaches a native conversion error
    // (whose message could quote it).
    const caCert = o.caCert == null ? undefined : Buffer.isBuffer(o.caCert) ? o.caCert.toString('utf8') : optString('caCert', o.caCert);
    const opts = {
      accessKey: optString('accessKey', o.accessKey),
      secretKey: optString('secretKey', o.secretKey),
      apiKey: optString('apiKey', o.apiKey),
      region: optString('region', o.region),
      baseUrl: optString('baseUrl', o.baseUrl),
      timeoutMs: optNumber('timeoutMs', o.timeoutMs),
      maxRetries: optNumber('maxRetries', o.maxRetries),
      caCert,
      tokenTtlSec: optNumber('tokenTtlSec', o.tokenTtlSec),
      tokenRefreshMarginSec: optNumber('tokenRefreshMarginSec', o.tokenRefreshMarginSec),
    };
    const native_ = call(() => new native.NativeClient(opts));
    Object.defineProperty(this, NATIVE, { value: native_, enumerable: false });
  }

  get baseUrl() {
    return this[NATIVE].baseUrl();
  }

  /** Resolves the bearer token (a cached signed JWT, or the API key). */
  async token() {
    return call(() => this[NATIVE].token());
  }

  /** How many JWTs this client has signed (one per token lifetime, however many callers). */
  get tokenSignatures() {
    return this[NATIVE].tokenSignatures();
  }

  /** Looks a task up by the caller's `externalTaskId`. */
  async getTaskByExternalId(externalTaskId, { kind = DEFAULT_KIND, signal } = {}) {
    const n = this[NATIVE];
    return taskOf(await withSignal(signal, (c) => n.getTaskByExternalId(kind, String(externalTaskId), c)));
  }

  /** Every task of `kind`, page by page (newest first); stops at the first short page. */
  iterTasks({ kind = DEFAULT_KIND, pageSize = 30, signal } = {}) {
    const n = this[NATIVE];
    return drain(signal, (c) => n.iterTasks(kind, pageSize, c), taskOf);
  }

  /**
   * Yields a TaskUpdate each time one of the tasks changes status; ends when every task is
   * terminal. A task that fails for good (not found, wait timeout, ...) throws its KlingError
   * from the iterator, which ends the watch. Leaving the loop early or aborting stops polling.
   */
  watch(ids, { kind = DEFAULT_KIND, timeoutMs, pollIntervalMs, maxPollIntervalMs, concurrency, signal } = {}) {
    const n = this[NATIVE];
    const list = Array.from(ids, String);
    return drain(
      signal,
      (c) => n.watch(kind, list, timeoutMs, pollIntervalMs, maxPollIntervalMs, concurrency, c),
      updateOf,
    );
  }

  /** Saves the images/videos of a succeeded task into `dir`; resolves the file paths. */
  async downloadResults(task, dir, { signal } = {}) {
    // A Task hands over the server's object as received while `raw` was never read (no parse
    // and re-serialise); a plain object with `kind` and `raw` is accepted as well.
    const raw =
      task instanceof Task ? rawTextOf(task)
      : task != null && typeof task === 'object' && task.raw != null ? JSON.stringify(task.raw)
      : undefined;
    if (raw === undefined || typeof task.kind !== 'string') {
      throw new KlingError('downloadResults needs a Task (from getTask, wait, ...)', { kind: 'invalid_request' });
    }
    const n = this[NATIVE];
    return withSignal(signal, (c) => n.downloadResults(task.kind, raw, path.resolve(String(dir)), c));
  }

  async getTask(id, { kind = DEFAULT_KIND, signal } = {}) {
    const n = this[NATIVE];
    return taskOf(await withSignal(signal, (c) => n.getTask(kind, String(id), c)));
  }

  async getImageTask(id, { signal } = {}) {
    return this.getTask(id, { kind: DEFAULT_KIND, signal });
  }

  async listTasks({ kind = DEFAULT_KIND, page = 1, pageSize = 30, signal } = {}) {
    const n = this[NATIVE];
    const text = await withSignal(signal, (c) => n.listTasks(kind, page, pageSize, c));
    return JSON.parse(text).map((v) => new Task(v));
  }

  /** One entry per id, in order: a Task or a KlingError (never rejects for per-id failures). */
  async getMany(ids, { kind = DEFAULT_KIND, concurrency = 8, signal } = {}) {
    const n = this[NATIVE];
    const list = Array.from(ids, String);
    const out = new Array(list.length);
    // Chunks of answers are converted here while the rest of the batch is in flight.
    const chunks = drain(signal, (c) => n.getManyStream(kind, list, concurrency, c), (x) => x);
    for await (const { json, raws } of chunks) {
      // Rows: a task's fields (`taskOfRow`), or `[positions, error]`.
      for (const row of JSON.parse(json)) {
        const positions = row[0];
        for (let k = 0; k < positions.length; k++) {
          out[positions[k]] = row.length === 2 ? KlingError.fromPayload(row[1]) : taskOfRow(row, raws, k > 0);
        }
      }
    }
    return out;
  }

  /**
   * Polls until the task is `succeed` or `failed` and resolves it. `onUpdate(update)` runs on
   * the JS thread for each status change, in order (a returned Promise is awaited); if it
   * throws (or rejects), the wait rejects with that error and polling stops.
   */
  async wait(id, { kind = DEFAULT_KIND, timeoutMs, pollIntervalMs, maxPollIntervalMs, onUpdate, signal } = {}) {
    const n = this[NATIVE];
    const taskId = String(id);
    if (onUpdate == null) {
      return taskOf(
        await withSignal(signal, (c) => n.wait(kind, taskId, timeoutMs, pollIntervalMs, maxPollIntervalMs, c)),
      );
    }
    if (typeof onUpdate !== 'function') {
      throw new KlingError('onUpdate must be a function', { kind: 'invalid_request' });
    }
    const updates = drain(
      signal,
      (c) => n.waitUpdates(kind, taskId, timeoutMs, pollIntervalMs, maxPollIntervalMs, c),
      updateOf,
    );
    for await (const update of updates) {
      const r = onUpdate(update);
      if (r != null && typeof r.then === 'function') await r;
      if (update.task.isTerminal) return update.task;
    }
    throw new KlingError('the wait ended without a final status', { kind: 'cancelled', taskId });
  }

  async waitImageTask(id, options = {}) {
    return this.wait(id, { ...options, kind: DEFAULT_KIND });
  }

  /** Creates a task of `kind` from a body (camelCase or snake_case keys). */
  async createTask(kind, body, { signal } = {}) {
    const n = this[NATIVE];
    const json = JSON.stringify(toWire(body || {}));
    return taskOf(await withSignal(signal, (c) => n.createTask(kind, json, c)));
  }

  /** Creates an image-generation task: {prompt, modelName, negativePrompt, n, aspectRatio, ...}. */
  async createImageTask(request, { signal } = {}) {
    return this.createTask(DEFAULT_KIND, request, { signal });
  }

  [util.inspect.custom]() {
    return `Client { baseUrl: ${JSON.stringify(this.baseUrl)} }`;
  }

  toJSON() {
    return { baseUrl: this.baseUrl };
  }
}

/** Signs a Kling AccessKey/SecretKey JWT (HS256). `now` is Unix seconds; `ttl` seconds. */
function signJwt(accessKey, secretKey, { now, ttl } = {}) {
  return call(() => native.signJwt(accessKey, secretKey, now ?? undefined, ttl ?? undefined));
}

function bodyText(body) {
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  return JSON.stringify(body);
}

/** Parses a callback (webhook) body into a Task. */
function parseCallback(body) {
  return taskOf(call(() => native.parseCallback(bodyText(body))));
}

/** Parses a task response body (envelope or bare task object) into a Task. */
function parseTask(body, { kind = DEFAULT_KIND } = {}) {
  return taskOf(call(() => native.parseTask(kind, bodyText(body))));
}

function headerPairs(headers) {
  if (headers == null) return [];
  if (typeof headers.entries === 'function' && !Array.isArray(headers)) {
    return Array.from(headers.entries(), ([k, v]) => [String(k), String(v)]);
  }
  if (Array.isArray(headers)) return headers.map(([k, v]) => [String(k), String(v)]);
  const out = [];
  for (const [k, v] of Object.entries(headers)) {
    if (Array.isArray(v)) for (const x of v) out.push([k, String(x)]);
    else if (v != null) out.push([k, String(v)]);
  }
  return out;
}

/** Verifies a webhook signature; throws KlingError (kind "signature") when it fails. */
function verifyWebhook(secret, headers, body, { toleranceSec } = {}) {
  call(() => native.verifyWebhook(secret, headerPairs(headers), bodyText(body), toleranceSec ?? undefined));
  return true;
}

/** The KlingError an API answer with this HTTP status and business code becomes. */
function errorForApi(httpStatus, code, message = '') {
  return KlingError.fromPayload(JSON.parse(native.errorForApi(httpStatus, code ?? undefined, message)));
}

/** The documented task statuses (a task may also carry an unknown server value, kept as is). */
const TaskStatus = Object.freeze({
  SUBMITTED: 'submitted',
  PROCESSING: 'processing',
  SUCCEED: 'succeed',
  FAILED: 'failed',
});

const ERROR_KINDS = Object.freeze(native.errorKinds());
const TASK_KINDS = Object.freeze(native.taskKinds());

module.exports = {
  Client,
  KlingError,
  Task,
  TaskUpdate,
  TaskStatus,
  signJwt,
  parseCallback,
  parseTask,
  verifyWebhook,
  errorForApi,
  ERROR_KINDS,
  TASK_KINDS,
  nativeVersion: native.nativeVersion,
};

// A panic on purpose, sync or async, for the test that no panic reaches JS as anything but a
// KlingError (not part of the API: non-enumerable, not typed).
Object.defineProperty(module.exports, '_panicForTests', {
  enumerable: false,
  value: (async_ = false) => (async_ ? withSignal(undefined, () => native.panicForTestsAsync()) : call(() => native.panicForTests())),
});
