"""Turns bench/run's raw results into the Markdown section of docs/benchmarks.md.

    python3 bench/report.py --results R --extra E --date D --machine M --command C \
        --reps R --n N --peer-n N --docs-n N --httpx-n N --concurrency C --wrk-duration D \
        --n-watch N [--doc docs/benchmarks.md]

Without --doc the section is printed. With --doc, the text between the two markers below is
replaced (or, the first time, the "## Not measured yet" section is); the rest of the file is
kept as it is. Standard library only.
"""

import argparse
import re

N_WATCH = [10000]
BEGIN = "<!-- bench/run: generated section, begin -->"
END = "<!-- bench/run: generated section, end -->"

LANG = {
    "wrk": "limit",
    "kw-rust": "Rust",
    "kw-cli": "CLI",
    "kw-py": "Python",
    "kw-py-async": "Python",
    "kw-py-gather": "Python",
    "docs-sample": "Python",
    "requests-session": "Python",
    "aiohttp": "Python",
    "httpx": "Python",
    "kw-node": "Node",
    "fetch-jsonwebtoken": "Node",
    "kling-api": "Node",
}
PEERS = {"docs-sample", "requests-session", "aiohttp", "httpx", "fetch-jsonwebtoken", "kling-api"}
LABEL = {
    "wrk": "wrk `-t1`, one pre-signed token",
    "kw-rust": "klingwatch Rust `Client::get_many`, current-thread runtime",
    "kw-cli": "klingwatch CLI `status --ids-from FILE --concurrency 64 --jsonl`",
    "kw-py": "klingwatch Python `Client.get_many`",
    "kw-py-async": "klingwatch Python `AsyncClient.get_many`",
    "kw-py-gather": "klingwatch Python `AsyncClient.get_task` × `asyncio.gather`",
    "docs-sample": "docs sample: PyJWT + requests, token and connection per call, sequential",
    "requests-session": "requests.Session per thread + PyJWT (cached), 64 threads",
    "aiohttp": "aiohttp + PyJWT (cached)",
    "httpx": "httpx.AsyncClient + PyJWT (cached)",
    "kw-node": "klingwatch Node `Client.getMany`",
    "fetch-jsonwebtoken": "fetch + jsonwebtoken (cached), 64 workers",
    "kling-api": "npm `kling-api` `queryImageGenTask`, 64 workers",
}
TARGET = {
    "mock-http": "emulator, plain HTTP",
    "mock-tls": "emulator, TLS",
    "nginx-http": "nginx fixed body, plain HTTP",
    "nginx-tls": "nginx fixed body, TLS",
}


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 7:
                continue
            t = (p[5].split() + ["0"] * 4)[:4]
            rows.append({
                "target": p[0], "client": p[1], "n": int(p[2] or 0), "ok": int(p[3] or 0),
                "rps": float(p[4] or 0), "wall": float(t[0]), "cpu": float(t[1]) + float(t[2]),
                "rss_kib": int(t[3]), "load": p[6], "note": p[7] if len(p) > 7 else "",
                "range": p[8] if len(p) > 8 else "",
            })
    return rows


def fmt_rps(x):
    return f"{x:,.0f}" if x else "—"


def fmt_range(r):
    """bench/run's ``min-max`` req/s of a client's runs, as ``min–max``."""
    lo, _, hi = r.partition("-")
    return f"{int(lo):,}–{int(hi):,}" if lo and hi else "—"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


def section(a, rows, extra):
    if a.docs_n == a.httpx_n:
        few = f"the docs sample and httpx the first {a.httpx_n:,}"
    else:
        few = f"the docs sample the first {a.docs_n:,} and httpx the first {a.httpx_n:,}"
    out = [BEGIN, "", "## Side by side with the clients users would otherwise pick (issue 8)", ""]
    out += [
        f"Run: {a.date}. Machine: {a.machine}.",
        f"Command: `{a.command}` ({a.n:,} seeded ids, concurrency {a.concurrency}; each klingwatch "
        f"client queries all of them, and wrk runs {a.wrk_duration} a pass over the same ids in "
        f"turn; the other peers get the first {a.peer_n:,}, {few}, which at their rates are runs "
        f"of several seconds as well).",
        "",
        "Every client runs in its own process, one after the other, against the same ids on the same "
        "target; the emulator and nginx run on the same 2 cores, each server with one worker thread "
        "(`klingwatch-mock --worker-threads 1`, nginx `worker_processes 1`), so req/s is what one "
        "client process gets while sharing the machine with the server. `× peer` is the ratio to the best peer of the "
        "same language on the same target, `× wrk` to the load generator on the same target. CPU per "
        "query and peak RSS are the client process's (`/usr/bin/time`: user + sys over the ids, "
        "start-up included). `load` is the 1-minute load average just before the run: other builds "
        "shared the machine, so compare ratios within one target rather than absolute figures."
        + (f" Each target had {a.reps} passes over the clients, so that a slow moment of the host "
           "fell on every client alike: each client ran once per pass (requests.Session and httpx, "
           "the slowest, in the first pass only), and its row is its median run by req/s, with the "
           "range of its runs beside it. wrk ran in every pass too: `× wrk` divides by its median "
           "run." if a.reps > 1 else ""),
        "",
    ]
    by_target = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    for target, rs in by_target.items():
        best = {}
        for r in rs:
            if r["client"] in PEERS and r["ok"] == r["n"]:
                lang = LANG[r["client"]]
                best[lang] = max(best.get(lang, 0), r["rps"])
        wrk = next((r["rps"] for r in rs if r["client"] == "wrk"), 0)
        out += [f"### {TARGET.get(target, target)}", "",
                "| client | lang | ids ok | req/s | runs' req/s | × peer | × wrk | CPU µs/query | peak RSS MiB | load |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            lang = LANG.get(r["client"], "?")
            failed = r["note"] == "failed" or r["ok"] < r["n"]
            rps = fmt_rps(r["rps"]) if not r["note"] else "failed"
            ok = f"{r['ok']:,}/{r['n']:,}"
            if failed and not r["note"]:
                rps += " (errors)"
            peer = ratio(r["rps"], best.get(lang)) if lang in best else "—"
            vs_wrk = ratio(r["rps"], wrk) if r["client"] != "wrk" else "1.00×"
            cpu = f"{r['cpu'] / r['n'] * 1e6:,.0f}" if r["n"] else "—"
            rss = f"{r['rss_kib'] / 1024:.1f}" if r["rss_kib"] else "—"
            name = LABEL.get(r["client"], r["client"])
            if r["client"] in ("kw-rust", "kw-py", "kw-py-async", "kw-py-gather", "kw-node", "kw-cli"):
                name = f"**{name}**"
                rps = f"**{rps}**"
            out.append(f"| {name} | {lang} | {ok} | {rps} | {fmt_range(r['range'])} | {peer} | {vs_wrk} | {cpu} | {rss} | {r['load']} |")
        out.append("")

    out += goals(by_target)
    out += costs(extra)
    out += [END]
    return "\n".join(out) + "\n"


def goals(by_target):
    def rps(target, client):
        r = next((r for r in by_target.get(target, []) if r["client"] == client), None)
        return r["rps"] if r and not r["note"] and r["ok"] == r["n"] else 0

    lines = ["### Goals of issue 8", "",
             "`wrk would make` is the ratio the load generator itself reaches on the same target "
             "(wrk's req/s over the same denominator): no client sharing the 2 cores with the "
             "server can be expected above it, so a goal above that figure cannot be met in this "
             "run by any client.", "",
             "| goal | target | measured | wrk would make | met? |", "|---|---|---|---|---|"]

    def row(goal, target, a, b, need):
        if not a or not b:
            lines.append(f"| {goal} | {TARGET.get(target, target)} | not measured | — | — |")
            return
        x = a / b
        w = rps(target, "wrk")
        limit = f"{w / b:.2f}×" if w else "—"
        lines.append(f"| {goal} | {TARGET.get(target, target)} | {x:.2f}× | {limit} | "
                     f"{'yes' if x >= need else '**no**'} |")

    for target in by_target:
        for kw in ("kw-py", "kw-py-async"):
            row(f"Python `{kw}` ≥ 4× aiohttp", target, rps(target, kw), rps(target, "aiohttp"), 4)
            row(f"Python `{kw}` ≥ 60× docs sample", target, rps(target, kw), rps(target, "docs-sample"), 60)
        row("Node `getMany` ≥ 5× fetch + jsonwebtoken", target, rps(target, "kw-node"),
            rps(target, "fetch-jsonwebtoken"), 5)
        if target.endswith("tls"):  # kling-api is https only
            row("Node `getMany` ≥ 5× npm kling-api", target, rps(target, "kw-node"),
                rps(target, "kling-api"), 5)
    for target in by_target:
        if not target.endswith("tls"):
            continue
        for kw in ("kw-rust", "kw-py", "kw-py-async", "kw-node"):
            row(f"`{kw}` ≥ 0.70 × wrk over TLS", target, rps(target, kw), rps(target, "wrk"), 0.70)
    lines.append("")
    return lines


def costs(extra):
    sign = {k: v for (g, k, v) in extra if g == "sign"}
    start = {k: v for (g, k, v) in extra if g == "start"}
    lines = ["### JWT signing (ns per token, same run)", "",
             "`fresh` signs a new token per call; `cached` is the client's cached-token path "
             "(klingwatch: `Client.token()`; peers: a PyJWT/jsonwebtoken token kept until 60 s "
             "before expiry, as the peer clients above do).", "",
             "| library | fresh | cached |", "|---|---|---|"]
    names = [("rust", "klingwatch Rust `sign_jwt` / `Client::token`"),
             ("klingwatch-python", "klingwatch Python `sign_jwt` / `Client.token()`"),
             ("pyjwt", "PyJWT `jwt.encode` (docs sample claims)"),
             ("klingwatch-node", "klingwatch Node `signJwt` / `client.token()`"),
             ("jsonwebtoken", "jsonwebtoken `jwt.sign`")]
    for key, label in names:
        v = sign.get(key, "").split()
        if len(v) == 2:
            lines.append(f"| {label} | {v[0]} | {v[1]} |")
        else:
            lines.append(f"| {label} | not measured | |")
    lines += ["", "### Start-up (ms, mean of repeated runs, same run)", "",
              "| what | ms |", "|---|---|"]
    labels = [("python-import-klingwatch-inproc",
               "`import klingwatch` timed inside the process (goal ≤ 30 ms)"),
              ("node-require-klingwatch-inproc",
               "`require('klingwatch')` timed inside the process (goal ≤ 30 ms)"),
              ("python-bare", "`python -c pass`"),
              ("python-import-klingwatch", "`python -c 'import klingwatch'`"),
              ("python-import-requests-jwt", "`python -c 'import requests, jwt'`"),
              ("python-import-aiohttp-jwt", "`python -c 'import aiohttp, jwt'`"),
              ("node-bare", "`node -e 0`"),
              ("node-require-klingwatch", "`node -e \"require('klingwatch')\"`"),
              ("node-require-jsonwebtoken", "`node -e \"require('jsonwebtoken')\"`"),
              ("cli-version", "`klingwatch --version`")]
    for key, label in labels:
        v = start.get(key, "not measured")
        if key.endswith("-inproc") and v != "not measured":
            v = f"{v} ({'met' if float(v) <= 30 else '**not met**'})"
        lines.append(f"| {label} | {v} |")
    watch = {k: v.split() for (g, k, v) in extra if g == "watch"}
    if watch:
        lines += ["", f"### Watching {N_WATCH[0]:,} tasks (same run)", "",
                  "Tasks created on a fresh emulator (processing after 2 s, succeed after 20 s), "
                  "then watched to the end with concurrency 64, poll interval 1 s growing ×1.5 to "
                  "10 s. Lag = the moment the update reached the caller − the server's `updated_at`. "
                  "Goal: peak RSS ≤ 64 MiB.", "",
                  "| client | terminal / updates / errors | lag p50 / p99 / max (ms) | peak RSS MiB | ≤ 64 MiB? |",
                  "|---|---|---|---|---|"]
        for key, label in (("rust", "Rust `Client::watch` (examples/watch_many)"),
                           ("python", "Python `Client.watch` (bench/watch.py)")):
            v = watch.get(key)
            if not v or len(v) != 7:
                lines.append(f"| {label} | not measured | | | |")
                continue
            mib = int(v[6]) / 1024
            lines.append(f"| {label} | {v[0]} / {v[1]} / {v[2]} | {v[3]} / {v[4]} / {v[5]} | "
                         f"{mib:.1f} | {'yes' if mib <= 64 else '**no**'} |")
    if "mock-rss-kib" in start:
        lines += ["", f"Emulator (plain HTTP) RSS after all runs: {int(start['mock-rss-kib']) / 1024:.1f} MiB."]
    lines.append("")
    return lines


def main():
    p = argparse.ArgumentParser()
    for k in ("results", "extra", "date", "machine", "command", "reps", "n", "peer-n", "docs-n",
              "httpx-n", "concurrency", "wrk-duration", "n-watch"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--doc")
    a = p.parse_args()
    a.n, a.peer_n, a.docs_n, a.httpx_n = int(a.n), int(a.peer_n), int(a.docs_n), int(a.httpx_n)
    a.concurrency, a.reps = int(a.concurrency), int(a.reps)
    N_WATCH[0] = int(a.n_watch)
    rows = load(a.results)
    extra = []
    with open(a.extra) as f:
        for line in f:
            q = line.rstrip("\n").split("\t")
            if len(q) == 3:
                extra.append(tuple(q))
    text = section(a, rows, extra)
    if not a.doc:
        print(text)
        return
    with open(a.doc) as f:
        doc = f.read()
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + text.rstrip("\n") + doc[doc.index(END) + len(END):]
    else:
        m = re.search(r"^## Not measured yet\n.*?(?=^## |\Z)", doc, flags=re.S | re.M)
        if m:
            doc = doc[: m.start()] + text + "\n" + doc[m.end():]
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
    with open(a.doc, "w") as f:
        f.write(doc.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
