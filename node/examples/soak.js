'use strict';
// Soak through the Node binding: N status queries (default 100,000) with ~10 % injected
// faults (the mix of tests/soak.json), in rounds of getMany at concurrency 64.
//
// Checks: every id gets exactly one Task or one KlingError carrying its id (nothing lost, no
// other rejection), and RSS stays flat (within 10 %) after the warm-up round.
//
//   cargo build -p klingwatch-mock && (cd node && npm run build)
//   target/debug/klingwatch-mock --port 18083 &
//   node node/examples/soak.js http://127.0.0.1:18083 100000
//
// Exit status 0 only when every check holds.
const fs = require('node:fs');
const path = require('node:path');
const { Client, KlingError } = require('..');

const ROOT = path.resolve(__dirname, '..', '..');

async function ctl(url, method, p, body) {
  const res = await fetch(`${url}/__mock${p}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

async function main() {
  const url = process.argv[2] || 'http://127.0.0.1:18083';
  const total = Number(process.argv[3] || 100000);
  const rounds = 10;
  const perRound = Math.floor(total / rounds);
  const mix = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'soak.json'), 'utf8'));
  await ctl(url, 'POST', '/reset');
  const ids = [];
  for (let i = 0; i < perRound; i += 32) {
    const batch = [];
    for (let j = i; j < Math.min(i + 32, perRound); j++) {
      const status = mix.seed_statuses[j % mix.seed_statuses.length];
      batch.push(ctl(url, 'POST', '/tasks', { status }).then((v) => (v.data && typeof v.data === 'object' ? v.data : v).task_id));
    }
    ids.push(...(await Promise.all(batch)));
  }
  for (const f of mix.faults) {
    await ctl(url, 'POST', '/faults', { ...f, times: 0, match: { path_prefix: '/v1/images/generations/' } });
  }
  const client = new Client({
    accessKey: 'klingwatch-test-ak', secretKey: 'klingwatch-test-sk', baseUrl: url, timeoutMs: 1000, maxRetries: 3,
  });
  const kinds = {};
  let oks = 0;
  let errs = 0;
  let ok = true;
  const rss = [];
  const started = process.hrtime.bigint();
  for (let round = 0; round < rounds; round++) {
    const results = await client.getMany(ids, { concurrency: 64 });
    if (results.length !== ids.length) {
      console.log(`LOST: ${results.length} results for ${ids.length} ids`);
      ok = false;
    }
    results.forEach((r, i) => {
      if (r instanceof KlingError) {
        errs++;
        kinds[r.kind] = (kinds[r.kind] || 0) + 1;
        if (r.taskId !== ids[i]) {
          console.log(`ERROR WITHOUT ITS ID: ${r.message}`);
          ok = false;
        }
      } else if (r && typeof r.id === 'string') {
        oks++;
        if (r.id !== ids[i]) {
          console.log(`MISMATCH: asked ${ids[i]}, got ${r.id}`);
          ok = false;
        }
      } else {
        console.log(`NOT A TASK OR KLINGERROR: ${r}`);
        ok = false;
      }
    });
    if (global.gc) global.gc();
    rss.push(Math.round(process.memoryUsage().rss / 1024));
    console.log(`round ${String(round + 1).padStart(2)}: ${String((round + 1) * perRound).padStart(7)} queries, ${String(oks).padStart(6)} ok, ${String(errs).padStart(5)} errors, RSS ${rss[rss.length - 1]} KiB`);
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const warm = Math.max(rss[1], 1);
  const peak = Math.max(...rss.slice(1));
  const growth = (peak / warm - 1) * 100;
  const faults = (await ctl(url, 'GET', '/faults')).faults;
  const fired = faults.reduce((a, f) => a + (f.fired || 0), 0);
  console.log('---');
  console.log(`queries: ${oks + errs} in ${elapsed.toFixed(1)} s (${Math.round((oks + errs) / elapsed)}/s)`);
  console.log(`results: ${oks} tasks + ${errs} typed errors = ${oks + errs} (asked ${perRound * rounds})`);
  console.log(`errors by kind: ${JSON.stringify(kinds)}`);
  console.log(`faults fired by the emulator: ${fired}`);
  console.log(`RSS after warm-up: ${warm} KiB, peak after: ${peak} KiB, growth ${growth.toFixed(1)} %`);
  if (oks + errs !== perRound * rounds) ok = false;
  if (growth > 10) {
    console.log('RSS GREW MORE THAN 10 %');
    ok = false;
  }
  console.log(ok ? 'PASS' : 'FAIL');
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
