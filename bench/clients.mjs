// Node clients of the side-by-side benchmark (run by bench/run; not a test).
//
//   node bench/clients.mjs CLIENT BASE_URL IDS_FILE CONCURRENCY [CA_PEM]
//   node bench/clients.mjs sign LIB [N]
//
// Env: KW_NODE (the klingwatch package folder, default ../node), KW_PEERS (the folder whose
// node_modules holds the peers that bench/run installed: jsonwebtoken, kling-api).
// Prints one JSON line: n, ok, errors, seconds (the queries only), rps. TLS peers trust the
// emulator's CA through NODE_EXTRA_CA_CERTS, which bench/run sets.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const KW_NODE = path.resolve(process.env.KW_NODE || path.join(here, '..', 'node'));
const PEERS = path.resolve(process.env.KW_PEERS || path.join(here, '..', 'target', 'bench', 'peers', 'node'));
const requirePeer = createRequire(path.join(PEERS, 'package.json'));
const AK = 'klingwatch-test-ak';
const SK = 'klingwatch-test-sk';
const PATH = '/v1/images/generations/';

function jwtToken(jwt, now = Math.floor(Date.now() / 1000)) {
  // Same claims and header as the official sample.
  return jwt.sign({ iss: AK, exp: now + 1800, nbf: now - 5 }, SK, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT' } });
}

class CachedToken {
  constructor(jwt) {
    this.jwt = jwt;
    this.exp = 0;
    this.value = '';
  }
  get() {
    const now = Math.floor(Date.now() / 1000);
    if (now >= this.exp - 60) {
      this.value = jwtToken(this.jwt, now);
      this.exp = now + 1800;
    }
    return this.value;
  }
}

// `limit` workers pull ids from one shared iterator: at most `limit` queries in flight.
async function pool(ids, limit, one) {
  const it = ids[Symbol.iterator]();
  const workers = Array.from({ length: limit }, async () => {
    let ok = 0;
    for (const id of it) ok += (await one(id)) ? 1 : 0;
    return ok;
  });
  return (await Promise.all(workers)).reduce((a, b) => a + b, 0);
}

const clients = {
  async 'kw-node'(url, ids, conc, ca) {
    const kw = createRequire(path.join(KW_NODE, 'package.json'))('./index.js');
    const c = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: url, caCert: ca ? readFileSync(ca) : undefined });
    const t0 = performance.now();
    const res = await c.getMany(ids, { concurrency: conc });
    const dt = (performance.now() - t0) / 1000;
    return [res.filter((r) => r instanceof kw.Task).length, dt];
  },
  async 'fetch-jsonwebtoken'(url, ids, conc) {
    const tok = new CachedToken(requirePeer('jsonwebtoken'));
    const t0 = performance.now();
    const ok = await pool(ids, conc, async (id) => {
      const r = await fetch(url + PATH + id, { headers: { Authorization: `Bearer ${tok.get()}` } });
      const body = await r.json();
      return r.status === 200 && body.code === 0;
    });
    return [ok, (performance.now() - t0) / 1000];
  },
  async 'kling-api'(url, ids, conc) {
    const entry = path.join(PEERS, 'node_modules', 'kling-api', 'dist', 'api.js');
    const { KlingAPI } = await import(pathToFileURL(entry).href);
    const api = new KlingAPI({ accessKey: AK, secretKey: SK, baseUrl: url });
    const t0 = performance.now();
    const ok = await pool(ids, conc, async (id) => {
      try {
        const r = await api.queryImageGenTask(id);
        return r && r.code === 0;
      } catch {
        return false;
      }
    });
    return [ok, (performance.now() - t0) / 1000];
  },
};

function sign(lib, n) {
  const now = Math.floor(Date.now() / 1000);
  let fresh;
  let cached;
  if (lib === 'klingwatch') {
    const kw = createRequire(path.join(KW_NODE, 'package.json'))('./index.js');
    let t0 = performance.now();
    for (let k = 0; k < n; k++) kw.signJwt(AK, SK, { now: now + (k % 7) });
    fresh = performance.now() - t0;
    const c = new kw.Client({ accessKey: AK, secretKey: SK, baseUrl: 'http://127.0.0.1:9' });
    t0 = performance.now();
    if (typeof c.token === 'function') {
      for (let k = 0; k < n; k++) c.token();
      cached = performance.now() - t0;
    }
  } else if (lib === 'jsonwebtoken') {
    const jwt = requirePeer('jsonwebtoken');
    let t0 = performance.now();
    for (let k = 0; k < n; k++) jwtToken(jwt, now + (k % 7));
    fresh = performance.now() - t0;
    const tok = new CachedToken(jwt);
    t0 = performance.now();
    for (let k = 0; k < n; k++) tok.get();
    cached = performance.now() - t0;
  } else {
    throw new Error(`unknown lib ${lib}`);
  }
  const ns = (ms) => (ms === undefined ? null : Math.round((ms * 1e6) / n));
  console.log(JSON.stringify({ fresh_ns: ns(fresh), cached_ns: ns(cached) }));
}

const [name, url, idsFile, conc, ca] = process.argv.slice(2);
if (name === 'sign') {
  sign(url, Number(idsFile || 100000));
} else {
  const ids = readFileSync(idsFile, 'utf8').split('\n').filter(Boolean);
  const [ok, dt] = await clients[name](url, ids, Number(conc), ca || undefined);
  console.log(JSON.stringify({ n: ids.length, ok, errors: ids.length - ok, seconds: +dt.toFixed(4), rps: +(ids.length / dt).toFixed(1) }));
}
