'use strict';
// Figure (not a test): time of `require('klingwatch')` in a fresh Node process, median of N
// runs (the addon as built: `npm run build` makes a debug build, `npm run build -- --release`
// a release one). Usage: node bench/require_time.js [runs]
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const runs = Number(process.argv[2] || 21);
const probe = `
  const t0 = process.hrtime.bigint();
  require(${JSON.stringify(path.resolve(__dirname, '..'))});
  process.stdout.write(String(Number(process.hrtime.bigint() - t0) / 1e6));`;
const times = [];
for (let i = 0; i < runs; i++) times.push(Number(execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8' })));
times.sort((a, b) => a - b);
const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
console.log(`require('klingwatch'): median ${q(0.5)} ms, min ${q(0)} ms, p90 ${q(0.9)} ms over ${runs} fresh processes (node ${process.version})`);
