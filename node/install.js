'use strict';
// npm "install" hook. A tarball made by `npm pack` ships the compiled addon, so there is
// nothing to do. Installed from the source tree (`npm install ./node` in another project),
// the addon is missing: build it with cargo (release) from the Cargo workspace this package
// lives in and put it where native.js looks for it. Needs only the Rust toolchain.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const dir = __dirname;

function isMusl() {
  if (process.platform !== 'linux') return false;
  const report = process.report && process.report.getReport ? process.report.getReport() : null;
  return Boolean(report && report.header && !report.header.glibcVersionRuntime);
}

function addonName() {
  const { platform, arch } = process;
  if (platform === 'linux') return `klingwatch.linux-${arch}-${isMusl() ? 'musl' : 'gnu'}.node`;
  if (platform === 'win32') return `klingwatch.win32-${arch}-msvc.node`;
  return `klingwatch.${platform}-${arch}.node`;
}

function libraryFile() {
  if (process.platform === 'win32') return 'klingwatch_node.dll';
  if (process.platform === 'darwin') return 'libklingwatch_node.dylib';
  return 'libklingwatch_node.so';
}

function workspaceRoot() {
  for (let d = path.dirname(dir); d !== path.dirname(d); d = path.dirname(d)) {
    const manifest = path.join(d, 'Cargo.toml');
    if (fs.existsSync(manifest) && fs.existsSync(path.join(d, 'bindings', 'node', 'Cargo.toml'))) {
      return d;
    }
  }
  return null;
}

function main() {
  const target = path.join(dir, addonName());
  if (fs.existsSync(target)) return 0;
  // Developing in node/ itself: `npm run build` (napi CLI, debug) makes the addon.
  if (process.env.INIT_CWD && path.resolve(process.env.INIT_CWD) === dir) return 0;
  const root = workspaceRoot();
  if (!root) {
    console.error(`klingwatch: no prebuilt addon for ${process.platform}-${process.arch} in this package `
      + 'and no Cargo workspace to build one from');
    return 1;
  }
  console.error(`klingwatch: building the native addon with cargo (release) in ${root} ...`);
  const r = spawnSync('cargo', ['build', '--release', '--locked', '-p', 'klingwatch-node'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.error || r.status !== 0) {
    console.error('klingwatch: cargo build failed (is the Rust toolchain installed?)');
    return 1;
  }
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(root, process.env.CARGO_TARGET_DIR)
    : path.join(root, 'target');
  fs.copyFileSync(path.join(targetDir, 'release', libraryFile()), target);
  return 0;
}

process.exitCode = main();
