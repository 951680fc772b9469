// By-hand profile of Node `getMany` per thread (a profiling aid; `bench/run` does not use it).
//
//   node bench/node-threads.mjs NODE_DIR URL CA_PEM N [REPS]
//
// Runs REPS batches of N seeded ids (`bench-000001`...) at concurrency 64 with the klingwatch
// package in NODE_DIR (e.g. node/), and prints req/s, the process's CPU per query and each
// thread's (from /proc/self/task/*/stat, 10 ms ticks): `node` is the JS thread (and V8's
// helpers), `klingwatch-node` the core's runtime, `klingwatch-napi` napi's.
import { createRequire } from 'node:module';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const [dir, url, ca, nStr, repsStr] = process.argv.slice(2);
const n = Number(nStr);
const reps = Number(repsStr ?? 3);
const kw = createRequire(path.join(path.resolve(dir), 'package.json'))('./index.js');
const ids = Array.from({ length: n }, (_, i) => `bench-${String(i + 1).padStart(6, '0')}`);
const threads = () => {
  const out = {};
  for (const t of readdirSync('/proc/self/task')) {
    const s = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
    const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    out[`${name}:${t}`] = (Number(f[11]) + Number(f[12])) * 10000; // µs, from 100 Hz ticks
  }
  return out;
};
const c = new kw.Client({
  accessKey: 'klingwatch-test-ak',
  secretKey: 'klingwatch-test-sk',
  baseUrl: url,
  caCert: ca ? readFileSync(ca) : undefined,
});
await c.getTask(ids[0]);
for (let r = 0; r < reps; r++) {
  const th0 = threads();
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const res = await c.getMany(ids, { concurrency: 64 });
  const dt = (performance.now() - t0) / 1000;
  const u = process.cpuUsage(u0);
  const th1 = threads();
  const ok = res.filter((x) => x instanceof kw.Task).length;
  const per = {};
  for (const [k, v] of Object.entries(th1)) {
    const d = v - (th0[k] ?? 0);
    if (d > 0) per[k.split(':')[0]] = (per[k.split(':')[0]] ?? 0) + d / n;
  }
  const threadsText = Object.entries(per).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' ');
  console.log(`ok=${ok} req/s=${(n / dt).toFixed(0)} cpu_us/q=${((u.user + u.system) / n).toFixed(1)} ${threadsText}`);
}
