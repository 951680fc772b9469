'use strict';
// The generated loader native.js and its types native.d.ts are committed (napi writes them on
// every build). These tests fail when they fall behind the addon: every function, class, class
// method and static the built addon exports must be declared in native.d.ts and re-exported by
// name in native.js, and native.d.ts must declare nothing the addon lacks. Fix: `npm run build`
// and commit node/native.js and node/native.d.ts.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const native = require('../native.js');

const PKG = path.resolve(__dirname, '..');
const DTS = fs.readFileSync(path.join(PKG, 'native.d.ts'), 'utf8');
const LOADER = fs.readFileSync(path.join(PKG, 'native.js'), 'utf8');
const HINT = 'run `npm run build` in node/ and commit native.js and native.d.ts';

// The loader's own marker, not an addon export.
const LOADER_ONLY = new Set(['__napiBindingTarget']);

/** `export declare class NAME { ... }` blocks of native.d.ts: name -> body. */
function declaredClasses() {
  const out = new Map();
  const re = /^export declare class (\w+) \{\n([\s\S]*?)^\}/gm;
  for (let m; (m = re.exec(DTS)); ) out.set(m[1], m[2]);
  return out;
}

/** Names of `export declare function|const NAME` in native.d.ts. */
function declaredValues() {
  const out = new Set();
  const re = /^export declare (?:function|const) (\w+)\b/gm;
  for (let m; (m = re.exec(DTS)); ) out.add(m[1]);
  return out;
}

/** Methods (instance) and statics a class declares: the `  name(` lines of its block. */
function members(body) {
  const methods = new Set();
  const statics = new Set();
  for (const m of body.matchAll(/^ {2}(static )?(\w+)\s*[(<]/gm)) {
    if (m[2] === 'constructor') continue;
    (m[1] ? statics : methods).add(m[2]);
  }
  return { methods, statics };
}

const FN_OWN = new Set(['length', 'name', 'arguments', 'caller', 'prototype']);

function runtimeMembers(cls) {
  const methods = new Set(
    Object.getOwnPropertyNames(cls.prototype).filter((n) => n !== 'constructor' && typeof Object.getOwnPropertyDescriptor(cls.prototype, n).value === 'function'),
  );
  const statics = new Set(Object.getOwnPropertyNames(cls).filter((n) => !FN_OWN.has(n) && typeof cls[n] === 'function'));
  return { methods, statics };
}

const sorted = (s) => [...s].sort();

test('native.d.ts declares every export of the built addon, and nothing else', () => {
  const classes = declaredClasses();
  const values = declaredValues();
  const exported = Object.keys(native).filter((n) => !LOADER_ONLY.has(n));
  assert.ok(exported.length >= 10, `suspiciously few addon exports: ${exported}`);
  for (const name of exported) {
    assert.ok(classes.has(name) || values.has(name), `addon export ${name} is not declared in native.d.ts: ${HINT}`);
  }
  const runtime = new Set(exported);
  for (const name of [...classes.keys(), ...values]) {
    if (LOADER_ONLY.has(name)) continue;
    assert.ok(runtime.has(name), `native.d.ts declares ${name}, which the addon does not export: ${HINT}`);
  }
});

test('native.d.ts declares every method of the addon classes, and nothing else', () => {
  const classes = declaredClasses();
  const exportedClasses = Object.keys(native).filter((n) => classes.has(n));
  assert.ok(exportedClasses.includes('NativeClient'), 'NativeClient is not a declared class');
  for (const name of exportedClasses) {
    const cls = native[name];
    assert.equal(typeof cls, 'function', `${name} is declared as a class but is not one`);
    const want = runtimeMembers(cls);
    const got = members(classes.get(name));
    assert.deepEqual(sorted(got.methods), sorted(want.methods), `methods of ${name} in native.d.ts differ from the addon: ${HINT}`);
    assert.deepEqual(sorted(got.statics), sorted(want.statics), `static methods of ${name} in native.d.ts differ from the addon: ${HINT}`);
  }
});

test('native.js re-exports every addon export by name', () => {
  for (const name of Object.keys(native)) {
    if (LOADER_ONLY.has(name)) continue;
    assert.ok(
      LOADER.includes(`module.exports.${name} = nativeBinding.${name}\n`),
      `native.js does not re-export ${name} (ESM named imports need it): ${HINT}`,
    );
  }
});
