'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const ROOT = path.resolve(__dirname, '..', '..');
// The emulator binary: KLINGWATCH_MOCK_BIN, else target/debug of this checkout (or of
// CARGO_TARGET_DIR when set).
const MOCK =
  process.env.KLINGWATCH_MOCK_BIN ||
  path.join(
    process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target'),
    'debug',
    process.platform === 'win32' ? 'klingwatch-mock.exe' : 'klingwatch-mock',
  );
const AK = 'klingwatch-test-ak';
const SK = 'klingwatch-test-sk';

function vectors(name) {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'vectors', name), 'utf8'));
}

/** Starts the emulator on an ephemeral port (extra CLI `args`); resolves {url, stop}. */
function startMock(args = []) {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(MOCK)) {
      reject(new Error(`${MOCK} missing: run cargo build -p klingwatch-mock`));
      return;
    }
    const child = spawn(MOCK, ['--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    let buf = '';
    const timer = setTimeout(() => reject(new Error('mock did not start')), 15000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /klingwatch-mock listening on (\S+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], stop: () => child.kill() });
      }
    });
    child.on('error', reject);
  });
}

/** Calls the emulator's control API (`/__mock/...`); resolves the JSON answer. */
async function ctl(url, method, p, body) {
  const res = await fetch(`${url}/__mock${p}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`control ${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Seeds a task (fixed status unless changed); resolves its id. */
async function seed(url, body = {}) {
  let v = await ctl(url, 'POST', '/tasks', body);
  if (v && typeof v.data === 'object' && v.data) v = v.data;
  return v.task_id;
}

/** The emulator's logged requests whose path mentions `needle`. */
async function requestsFor(url, needle) {
  return (await ctl(url, 'GET', '/requests')).requests.filter((r) => r.path.includes(needle));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { ROOT, MOCK, AK, SK, vectors, startMock, ctl, seed, requestsFor, sleep };
