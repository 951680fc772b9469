'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const ROOT = path.resolve(__dirname, '..', '..');
const MOCK = path.join(ROOT, 'target', 'debug', process.platform === 'win32' ? 'klingwatch-mock.exe' : 'klingwatch-mock');
const AK = 'klingwatch-test-ak';
const SK = 'klingwatch-test-sk';

function vectors(name) {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'vectors', name), 'utf8'));
}

/** Starts the emulator on an ephemeral port; resolves {url, stop}. */
function startMock() {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(MOCK)) {
      reject(new Error(`${MOCK} missing: run cargo build -p klingwatch-mock`));
      return;
    }
    const child = spawn(MOCK, ['--port', '0'], {
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

module.exports = { ROOT, AK, SK, vectors, startMock };
