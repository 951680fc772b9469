'use strict';
// index.d.ts is checked: `tsc --strict --noEmit` over a typed usage of every public name
// (test/types/usage.ts), and every runtime export and Client method is declared.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const kw = require('..');

const PKG = path.resolve(__dirname, '..');
const DTS = fs.readFileSync(path.join(PKG, 'index.d.ts'), 'utf8');

test('tsc --strict --noEmit accepts the typed usage example', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types'), '--strict', '--noEmit'], {
      cwd: PKG,
      encoding: 'utf8',
      stdio: 'pipe',
    });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
});

test('every runtime export is declared in index.d.ts', () => {
  for (const name of Object.keys(kw)) {
    assert.match(DTS, new RegExp(`export declare (const|function|class) ${name}\\b`), `${name} is not declared`);
  }
});

test('every Client method and getter is declared in index.d.ts', () => {
  const body = DTS.slice(DTS.indexOf('export declare class Client {'));
  const block = body.slice(0, body.indexOf('\n}\n'));
  const names = Object.getOwnPropertyNames(kw.Client.prototype).filter((n) => n !== 'constructor' && n !== 'toJSON');
  assert.ok(names.length >= 15, names.join(','));
  for (const name of names) {
    assert.match(block, new RegExp(`\\n  (readonly )?${name}[(:<]`), `Client.${name} is not declared`);
  }
});
