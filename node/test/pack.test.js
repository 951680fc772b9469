'use strict';
// Packaging: `npm pack`, install the tarball into an empty scratch project (offline: the
// package has no runtime dependencies), then require and import it there and query the
// emulator through it.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { AK, SK, startMock, seed } = require('./helpers.js');

const run = promisify(execFile);
const PKG = path.resolve(__dirname, '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const quietNpm = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

test('the packed tarball installs into an empty project and works there', { timeout: 240000 }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klingwatch-pack-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const { stdout } = await run(NPM, ['pack', '--json', '--pack-destination', tmp], { cwd: PKG, env: quietNpm, maxBuffer: 1 << 24 });
  const [info] = JSON.parse(stdout.slice(stdout.indexOf('[')));
  const files = info.files.map((f) => f.path).sort();
  for (const want of ['index.js', 'index.mjs', 'index.d.ts', 'native.js', 'native.d.ts', 'package.json']) {
    assert.ok(files.includes(want), `${want} missing from the tarball: ${files}`);
  }
  assert.ok(files.some((f) => f.endsWith('.node')), `no native addon in the tarball: ${files}`);
  assert.ok(!files.some((f) => f.startsWith('test/') || f.includes('node_modules')), `stray files: ${files}`);
  const tarball = path.join(tmp, info.filename);
  assert.ok(fs.existsSync(tarball));

  const project = path.join(tmp, 'scratch');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true }));
  await run(NPM, ['install', tarball, '--offline', '--no-audit', '--no-fund', '--no-package-lock'], { cwd: project, env: quietNpm });
  assert.ok(fs.existsSync(path.join(project, 'node_modules', 'klingwatch', 'package.json')));

  const mock = await startMock();
  t.after(() => mock.stop());
  const id = await seed(mock.url, { status: 'succeed' });
  const env = { ...process.env, KW_URL: mock.url, KW_ID: id, KW_AK: AK, KW_SK: SK };
  const cjs = `
    const kw = require('klingwatch');
    if (!require.resolve('klingwatch').startsWith(${JSON.stringify(path.join(project, 'node_modules'))})) throw new Error('not the installed copy');
    const c = new kw.Client({ accessKey: process.env.KW_AK, secretKey: process.env.KW_SK, baseUrl: process.env.KW_URL });
    c.getTask(process.env.KW_ID).then((t) => console.log(JSON.stringify({ id: t.id, status: t.status, task: t instanceof kw.Task })));`;
  const a = JSON.parse((await run(process.execPath, ['-e', cjs], { cwd: project, env })).stdout);
  assert.deepEqual(a, { id, status: 'succeed', task: true });

  const esm = `
    import { Client, KlingError } from 'klingwatch';
    const c = new Client({ accessKey: process.env.KW_AK, secretKey: process.env.KW_SK, baseUrl: process.env.KW_URL, maxRetries: 0 });
    const t = await c.getImageTask(process.env.KW_ID);
    const e = await c.getTask('missing-in-scratch').catch((x) => x);
    console.log(JSON.stringify({ id: t.id, kind: e instanceof KlingError ? e.kind : String(e) }));`;
  const b = JSON.parse((await run(process.execPath, ['--input-type=module', '-e', esm], { cwd: project, env })).stdout);
  assert.deepEqual(b, { id, kind: 'not_found' });
});
