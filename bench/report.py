#!/usr/bin/env python3
"""Turns bench/results/latest.json into the plot and the tables of docs/benchmarks.md.

    report.py RESULTS.json META.json --plot docs/benchmarks-p99.png [--docs docs/benchmarks.md]

Without --docs the tables are printed (to paste). With it, the text between the markers
`<!-- results:begin -->` and `<!-- results:end -->` is replaced when the run has results of the
main suite, and the text between `<!-- cluster:begin -->` and `<!-- cluster:end -->` (the
scale-out section) when it has results of the cluster scenario; the other section is left alone.
"""
import argparse
import json
import os
import math
import re
import sys

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
IBEGIN = "<!-- interest:begin -->"
IEND = "<!-- interest:end -->"
CBEGIN = "<!-- cluster:begin -->"
CEND = "<!-- cluster:end -->"

NAMES = {
    "papo": "Papo",
    "papo-tmpfs": "Papo, DB on tmpfs, sync=normal",
    "papo-jemalloc": "Papo + jemalloc (LD_PRELOAD)",
    "papo-one-user": "Papo, all sockets one user",
    "node": "Node socket.io + SQLite",
    "node-nopersist": "Node socket.io, no DB",
    "raw-ws": "raw WebSocket baseline",
    "papo-sqlite-1": "1 node, SQLite",
    "papo-pg-1": "1 node, Postgres + Redis",
    "papo-pg-3": "3 nodes, Postgres + Redis",
}


def fmt_int(x):
    return f"{x:,.0f}"


def kib(x):
    return f"{x / 1024:,.1f} MiB"


SLOS = (250, 1000)


def sustained(r, slo):
    return r["delivery_pct"] >= 100.0 and r["p99_ms"] <= slo


def knee(rows, slo=250):
    """Highest step (its target deliveries/s, all of which were delivered) before the first one
    that misses the objective. Targets, not achieved rates, so timer jitter cannot flip a ratio."""
    best = 0.0
    # In target order: the ×1.25 steps that refine the ladder around its first miss run after it.
    for r in sorted(rows, key=lambda r: r.get("target_dps", r["dps"])):
        if not sustained(r, slo):
            break
        best = max(best, r.get("target_dps", r["dps"]))
    return best


DM_SLO = 50


def dm_knee(rows, slo=DM_SLO):
    """Highest DM rate of the ladder before the first step that misses delivery or the p99."""
    best = 0.0
    for r in rows:
        if not (r["delivery_pct"] >= 100.0 and r["p99_ms"] <= slo):
            break
        best = max(best, r["rate"])
    return best


def slowest(s):
    return "—" if s["catch_up_max_s"] is None else f"{s['catch_up_max_s']:.2f}"


def tables(res, meta):
    out = []
    w = out.append
    w(f"Measured {meta.get('date')} on {meta.get('machine')}. Load average (1/5/15 min) before "
      f"the run: {' '.join(meta.get('load_before', []))}; at the start of the scenarios: "
      f"{res.get('load_at_start')}; at the end: {res.get('load_at_end')}. "
      f"Scenarios took {res.get('total_secs', 0):.0f} s{' (QUICK smoke run: small numbers, not results)' if res.get('quick') else ''}.")
    w("")
    w(f"Versions: Papo {meta.get('papo_rev')} ({meta.get('rustc')}, socketioxide {meta.get('socketioxide')}, "
      f"rusqlite {meta.get('rusqlite')}); Node {meta.get('node')}, socket.io {meta.get('socket_io')}, "
      f"better-sqlite3 {meta.get('better_sqlite3')}; load generator and baseline: tokio-tungstenite "
      f"{meta.get('tokio_tungstenite')}.")
    w("")

    fan = res.get("fanout", [])
    by = {}
    for r in fan:
        by.setdefault((r["server"], r["n"]), []).append(r)

    # ---- summary against the targets ---------------------------------------------------------
    w("### Summary against the targets")
    w("")
    w("| target | result | met? |")
    w("|---|---|---|")
    for slo in SLOS:
        for n in sorted({r["n"] for r in fan}):
            p, nd, raw = (knee(by.get((s, n), []), slo) for s in ("papo", "node", "raw-ws"))
            ratio = p / nd if nd else math.inf
            w(f"| fan-out, {fmt_int(n)} clients, p99 ≤ {slo} ms: ≥ 5× Node's sustainable deliveries/s | "
              f"Papo {fmt_int(p)}/s, Node {fmt_int(nd)}/s: **{ratio:.1f}×** | {'yes' if ratio >= 5 else 'no'} |")
            if raw:
                w(f"| fan-out, {fmt_int(n)} clients, p99 ≤ {slo} ms: ≥ ½ of the raw WebSocket baseline | "
                  f"Papo {fmt_int(p)}/s, raw {fmt_int(raw)}/s: **{p / raw:.2f}** | {'yes' if p >= raw / 2 else 'no'} |")
    idle = res.get("idle", [])
    for r in idle:
        if r["server"] == "papo" and r["n"] == 15000:
            w(f"| idle memory per connection ≤ 10 KB (15k sockets) | Papo {r['per_conn_bytes'] / 1000:.1f} KB | "
              f"{'yes' if r['per_conn_bytes'] <= 10000 else 'no'} |")
    held = max([r["held"] for r in idle if r["server"] == "papo"] or [0])
    if idle:
        w(f"| ≥ 19,000 sockets held | Papo held {fmt_int(held)} | {'yes' if held >= 19000 else 'no'} |")
    for s in res.get("storm", []):
        if s["server"] == "papo":
            mx = s["catch_up_max_s"]
            ok = mx is not None and mx <= 10 and s["lost"] == 0
            w(f"| reconnect storm, {fmt_int(s['n'])} clients: all caught up ≤ 10 s, 0 lost | "
              f"{s['caught_up']}/{s['n']} caught up, slowest {f'{mx:.1f}' if mx is not None else '—'} s, lost {s['lost']} | {'yes' if ok else 'no'} |")
    dm = res.get("dm", [])
    dm_by = {}
    for r in dm:
        dm_by.setdefault(r["server"], []).append(r)
    if dm_by.get("papo"):
        best = dm_knee(dm_by["papo"])
        nd = dm_knee(dm_by.get("node", []))
        w(f"| durable DMs (sync=full), p99 ≤ {DM_SLO} ms, 100% delivered: ≥ 10,000/s | Papo {fmt_int(best)}/s"
          f"{f', Node {fmt_int(nd)}/s' if dm_by.get('node') else ''} | {'yes' if best >= 10000 else 'no'} |")
    c = res.get("client")
    if c:
        ing = c["ingest_events_per_sec"]
        w(f"| client ingest ≥ 100,000 events/s ({fmt_int(c['messages'])} messages) | {fmt_int(ing)} events/s | {'yes' if ing >= 100000 else 'no'} |")
        worst = max(s["time"]["p99_ms"] for s in c["search"])
        w(f"| search ≤ 5 ms p99, every query shape | worst p99 {worst} ms over {len(c['search'])} shapes | {'yes' if worst <= 5 else 'no'} |")
        sw = c.get("search_while_ingesting")
        if sw:
            worst_i = max(s["time"]["p99_ms"] for s in sw["search"])
            w(f"| search ≤ 5 ms p99 while ingesting {fmt_int(sw['events_per_sec'])} events/s | worst p99 {worst_i} ms | {'yes' if worst_i <= 5 else 'no'} |")
        fr = c.get("apply_to_searchable")
        if fr:
            w(f"| a new message searchable ≤ 1 s after it is applied | max {fr['max_ms']} ms | {'yes' if fr['max_ms'] <= 1000 else 'no'} |")
        if c.get("conversation_list_first_page"):
            cl = c["conversation_list_first_page"]
            what = f"first page of 50 of {fmt_int(c.get('conversations', 0))} conversations, as the app reads it"
        else:
            cl = c.get("conversations_list_and_unread") or c["conversations_list"]
            what = f"{fmt_int(c.get('conversations', 0))} conversations"
        w(f"| conversation list + unread totals ≤ 2 ms p99 ({what}) | p99 {cl['p99_ms']} ms | {'yes' if cl['p99_ms'] <= 2 else 'no'} |")
        op = c["open_first_page"]["p99_ms"]
        w(f"| cold open to first feed page ≤ 300 ms | p99 {op} ms | {'yes' if op <= 300 else 'no'} |")

    # ---- fan-out before / after -----------------------------------------------------------------
    if res.get("fanout_before") and fan:
        bm = res.get("fanout_before_meta") or {}
        bby = {}
        for r in res["fanout_before"]:
            bby.setdefault((r["server"], r["n"]), []).append(r)
        w("")
        w("### Fan-out before and after serializing each event once")
        w("")
        w(f"Before: Papo {bm.get('papo_rev', '?')} (`{bm.get('papo_server_bin', '?')}`), measured {bm.get('date', '?')}, "
          f"load average before the run {' '.join(bm.get('load_before', []))}. After: this run (Papo {meta.get('papo_rev')}). "
          "Highest sustained deliveries/s (every message delivered, p99 within the objective); Node and the raw "
          "baseline were measured in each run.")
        w("")
        pby = {}
        for r in res.get("fanout_previous", []):
            pby.setdefault((r["server"], r["n"]), []).append(r)
        w("| clients | p99 ≤ | Papo before | Papo after (the run before it) | Node before / after | raw before / after | after: × Node, × raw |")
        w("|---|---|---|---|---|---|---|")
        for slo in SLOS:
            for n in sorted({r["n"] for r in fan}):
                pb, pa = knee(bby.get(("papo", n), []), slo), knee(by.get(("papo", n), []), slo)
                nb, na = knee(bby.get(("node", n), []), slo), knee(by.get(("node", n), []), slo)
                rb, ra = knee(bby.get(("raw-ws", n), []), slo), knee(by.get(("raw-ws", n), []), slo)
                xn = f"{pa / na:.1f}×" if na else "∞ (Node 0)"
                xr = f"{pa / ra:.2f}" if ra else "—"
                prev = f" ({fmt_int(knee(pby.get(('papo', n), []), slo))})" if pby else ""
                w(f"| {fmt_int(n)} | {slo} ms | {fmt_int(pb)} | {fmt_int(pa)}{prev} | {fmt_int(nb)} / {fmt_int(na)} | "
                  f"{fmt_int(rb)} / {fmt_int(ra)} | {xn}, {xr} |")
        w("")

    # ---- heap profile of idle connections --------------------------------------------------------
    h = res.get("heap")
    if h and h.get("skipped"):
        # Said, not left out: a heap run that could not profile is not a result.
        w("")
        w(f"### What an idle connection holds: heap profile **SKIPPED**: {h['skipped']}")
        w("")
    elif h:
        hm = res.get("heap_meta") or meta
        rss = h.get("rss_per_conn_bytes")
        w("")
        w(f"### What an idle connection holds: heap profile at {fmt_int(h['held'])} connections")
        w("")
        w(f"Command: `bench/run.sh --scenarios heap` (Papo {hm.get('papo_rev', '?')}, measured {hm.get('date', '?')}): "
          f"{fmt_int(h['held'])} distinct users connect to one server running under heaptrack's preload library; once "
          "they are all connected and the server is idle it is killed, so what heaptrack saw allocated and not freed "
          "(`heaptrack_print --flamegraph-cost-type leaked`) is exactly the heap the idle server held. Each allocation is "
          "attributed to the frame nearest to it that is not allocator, container or standard-library code. "
          f"Held heap: {h['per_conn_bytes'] / 1000:.1f} KB per connection, the server's own baseline included "
          f"({h['heaptrack_summary'] or 'no summary'}); RSS grew by {rss / 1000 if rss else float('nan'):.1f} KB per "
          "connection in the same run (RSS also keeps what the allocator got back but did not return, and the peak of "
          "the connect wave).")
        w("")
        hb = res.get("heap_before")
        if hb and not hb.get("skipped"):
            hbm = res.get("heap_before_meta") or {}
            w(f"Before (Papo {hbm.get('papo_rev', '?')}, measured {hbm.get('date', '?')}, same command): held heap "
              f"{hb['per_conn_bytes'] / 1000:.1f} KB per connection, RSS +{hb.get('rss_per_conn_bytes', 0) / 1000:.1f} KB.")
            w("")
        before_fn = {r["name"]: r["per_conn_bytes"] for r in (hb or {}).get("by_function", [])}
        before_crate = {r["name"]: r["per_conn_bytes"] for r in (hb or {}).get("by_crate", [])}
        col = " | before" if before_fn else ""
        sep = "|---" if before_fn else ""
        w(f"| crate | KB per connection{col} |")
        w(f"|---|---{sep}|")
        for r in h["by_crate"][:10]:
            b = f" | {before_crate.get(r['name'], 0) / 1000:.2f}" if before_fn else ""
            w(f"| {r['name']} | {r['per_conn_bytes'] / 1000:.2f}{b} |")
        w("")
        w(f"| allocating function | KB per connection{col} |")
        w(f"|---|---{sep}|")
        shown = set()
        for r in h["by_function"][:20]:
            shown.add(r["name"])
            name = r["name"].replace("|", "\\|")
            if len(name) > 140:
                name = name[:137] + "…"
            b = f" | {before_fn.get(r['name'], 0) / 1000:.2f}" if before_fn else ""
            w(f"| `{name}` | {r['per_conn_bytes'] / 1000:.2f}{b} |")
        for name, v in sorted(before_fn.items(), key=lambda kv: -kv[1])[:20]:
            if name not in shown and v >= 500:
                w(f"| `{name}` | (not in the top 20) | {v / 1000:.2f} |")
        w("")

    # ---- private messages ----------------------------------------------------------------------
    if dm_by:
        w("")
        w(f"### Private messages: durable DMs/s at p99 ≤ {DM_SLO} ms")
        w("")
        w(f"{fmt_int(dm[0]['n'])} connected clients; each step sends `dm:send` at the given rate for the step's "
          "seconds from random senders to random recipients; latency is send → the recipient's `log` event "
          "(the reply to the sender is counted separately). A step passes when every DM is delivered with "
          f"p99 ≤ {DM_SLO} ms; the ladder stops at the first step that does not. `papo-tmpfs` is Papo with its "
          "database on tmpfs (no fsync reaches a disk), to separate the disk from the code.")
        w("")
        runs = [(res.get("dm_meta") or meta, dm_by)]
        if res.get("dm_before"):
            before_by = {}
            for r in res["dm_before"]:
                before_by.setdefault(r["server"], []).append(r)
            runs.insert(0, (res.get("dm_before_meta") or {}, before_by))
        for i, (m, by_server) in enumerate(runs):
            label = "Before" if len(runs) == 2 and i == 0 else ("After" if len(runs) == 2 else "Run")
            w(f"{label}: Papo {m.get('papo_rev', '?')} (`{m.get('papo_server_bin', '?')}`), measured {m.get('date', '?')}, "
              f"load average before the run {' '.join(m.get('load_before', []))}.")
            w("")
            w("| server | rate/s | delivered | p50 ms | p99 ms | max ms | server CPU | load generator CPU | passes |")
            w("|---|---|---|---|---|---|---|---|---|")
            for server, rows in by_server.items():
                for r in rows:
                    ok = r["delivery_pct"] >= 100.0 and r["p99_ms"] <= DM_SLO
                    w(f"| {server} | {fmt_int(r['rate'])} | {r['delivery_pct']:.2f}% | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                      f"{r['max_ms']:.1f} | {r['server_cpu_pct']:.0f}% | {r.get('loadgen_cpu_pct', 0):.0f}% | {'yes' if ok else '**no**'} |")
            w("")
            w("Highest passing rate: " + ", ".join(f"{s} {fmt_int(dm_knee(rows))}/s" for s, rows in by_server.items()) + ".")
            w("")
        if res.get("dm_previous"):
            prev_by = {}
            for r in res["dm_previous"]:
                prev_by.setdefault(r["server"], []).append(r)
            w(f"The run before this one with the same build (`bench/results/{res['dm_previous_name']}`), highest passing rate: "
              + ", ".join(f"{s} {fmt_int(dm_knee(rows))}/s" for s, rows in prev_by.items()) + ".")
            w("")

    # ---- client core ---------------------------------------------------------------------------
    if c:
        w("## Client core")
        w("")
        cm = res.get("client_meta") or meta
        w(f"Measured {cm.get('date')} on {cm.get('machine')}, Papo {cm.get('papo_rev')} ({cm.get('rustc')}, "
          f"rusqlite {cm.get('rusqlite')}); load average before the build: {' '.join(cm.get('load_before', []))}.")
        w("")
        w(f"Command: `bench/run.sh --scenarios client` (or `target/release/papo-bench client --messages {c['messages']}`). "
          f"A synthetic log of {fmt_int(c['events'])} events ({fmt_int(c['messages'])} messages: 80% public chat, 20% DMs "
          f"with {fmt_int(c.get('peers', 100))} peers, plus a post every 21st event), in `log` batches of 500 as the server sends them, is "
          "received (JSON parsed into `LogBatch`), applied (`Cache::apply_batch`: one transaction per batch, "
          "exactly-once with the cursor; full-text indexing is not in it) and published (`CoreEvent::Log` on a tokio "
          "broadcast channel, drained by a subscriber), with `Cache::index_step` run at least every 250 ms as the "
          "writer thread runs it while busy; afterwards index steps run back to back until the index has caught up. "
          f"Final cache: {c['cache_bytes'] / 1e6:,.0f} MB. Load average: {c['load']}.")
        w("")
        s = c["ingest_stage_secs"]
        w("| measure | result |")
        w("|---|---|")
        w(f"| ingest, received → applied → published | **{fmt_int(c['ingest_events_per_sec'])} events/s** over {c['ingest_secs']:.1f} s "
          f"(parse {s['parse']:.1f} s, apply {s['apply']:.1f} s, publish {s['publish']:.1f} s) |")
        segs = c.get("ingest_segment_rates") or []
        if segs:
            w(f"| ingest rate per 200k events, first → last | {' → '.join(fmt_int(x) for x in segs)} events/s |")
        if "index_catch_up_secs" in c:
            w(f"| index steps during the burst | {c['index_steps_during_ingest']} steps, {s.get('index_steps', 0):.1f} s; "
              f"{fmt_int(c['unindexed_after_ingest'])} rows unindexed at the end |")
            w(f"| full-text index catching up after the burst | {c['index_catch_up_secs']:.1f} s ({c['index_catch_up_steps']} steps) |")
        if "raw_insert_rows_per_sec_current_schema" in c:
            w(f"| raw batched inserts, same rows, current schema (indexes, no FTS on insert), 500 per transaction | {fmt_int(c['raw_insert_rows_per_sec_current_schema'])} rows/s |")
        w(f"| raw batched inserts, same rows, version-1 schema (indexes + FTS triggers), 500 per transaction | {fmt_int(c['raw_insert_rows_per_sec_schema'])} rows/s |")
        if "raw_insert_rows_per_sec_schema_5000" in c:
            w(f"| raw batched inserts, version-1 schema, 5,000 per transaction | {fmt_int(c['raw_insert_rows_per_sec_schema_5000'])} rows/s |")
        w(f"| raw batched inserts, same rows, bare table without index or FTS | {fmt_int(c['raw_insert_rows_per_sec_bare'])} rows/s |")
        for key, label in [("open_first_page", "open the cache (migrations checked) + first feed page"),
                           ("conversation_page_first", "public conversation, newest page of 50"),
                           ("conversation_page_deep", "public conversation, a page of 50 from the middle"),
                           ("dm_page_first", "DM conversation, newest page of 50"),
                           ("feed_page_first", "feed, newest page of 20"),
                           ("conversation_list_first_page", "conversation list as the app reads it: public room, first 50 DMs, unread total"),
                           ("conversation_list_middle_page", "conversation list, a page of 50 from the middle"),
                           ("conversations_list", "every conversation at once with unread counts (tools; the app pages)"),
                           ("unread_counts", "unread counts of every conversation"),
                           ("conversations_list_and_unread", "every conversation + every unread count"),
                           ("apply_to_searchable", "apply → a fresh word found by search")]:
            v = c.get(key)
            if not v:
                continue
            w(f"| {label} | median {v['median_ms']} ms, p99 {v['p99_ms']} ms, max {v['max_ms']} ms ({v['runs']} runs) |")
        for sr in c["search"]:
            v = sr["time"]
            w(f"| search, {sr['label']} `{sr['query']}` ({fmt_int(sr['matching_messages'])} matching messages, {sr['hits']} shown) | "
              f"median {v['median_ms']} ms, p99 {v['p99_ms']} ms, max {v['max_ms']} ms |")
        sw = c.get("search_while_ingesting")
        if sw:
            for sr in sw["search"]:
                v = sr["time"]
                w(f"| search while ingesting {fmt_int(sw['events_per_sec'])} events/s (largest unindexed tail {fmt_int(sw['max_unindexed_rows'])} rows), "
                  f"{sr['label']} `{sr['query']}` | median {v['median_ms']} ms, p99 {v['p99_ms']} ms, max {v['max_ms']} ms ({v['runs']} runs) |")
        w("")
        client_comparison(w, c, cm, res)
    return "\n".join(out)


def client_comparison(w, c, cm, res):
    """The client results beside an earlier build's (`client_before`) and beside the run before
    this one of the same build (`client_previous`), each column labelled with its own meta."""
    cols = [(res.get("client_before"), res.get("client_before_meta") or {}, "before"),
            (c, cm, "after"),
            (res.get("client_previous"), res.get("client_previous_meta") or {}, "after, the run before")]
    cols = [x for x in cols if x[0]]
    if len(cols) < 2:
        return
    w("### Client core: before and after, same machine, same command")
    w("")
    for r, m, name in cols:
        w(f"- {name}: Papo {m.get('papo_rev')}, measured {m.get('date')}, load average before the build "
          f"{' '.join(m.get('load_before', []))}.")
    w("")
    def search_p99(r, label, key="search"):
        src = r.get(key) or {}
        rows = src if isinstance(src, list) else src.get("search", [])
        return next((f"{s['time']['p99_ms']} ms" for s in rows if s["label"] == label), "–")
    def list_p99(r):
        if r.get("conversation_list_first_page"):
            return f"{r['conversation_list_first_page']['p99_ms']} ms (first page)"
        v = r.get("conversations_list_and_unread") or r.get("conversations_list")
        return f"{v['p99_ms']} ms (every conversation)" if v else "–"
    rows = [
        ("ingest, events/s", lambda r: fmt_int(r["ingest_events_per_sec"])),
        ("raw inserts into the current schema, rows/s", lambda r: fmt_int(r.get("raw_insert_rows_per_sec_current_schema", 0))),
        ("full-text index catching up after the burst", lambda r: f"{r.get('index_catch_up_secs', 0):.1f} s"),
        ("cache file", lambda r: f"{r['cache_bytes'] / 1e6:,.0f} MB"),
        ("conversation list + unread total, p99", list_p99),
    ]
    labels = [s["label"] for s in c["search"]]
    for lab in labels:
        rows.append((f"search p99, {lab}", lambda r, lab=lab: search_p99(r, lab)))
    for lab in labels:
        rows.append((f"search p99 while ingesting, {lab}", lambda r, lab=lab: search_p99(r, lab, "search_while_ingesting")))
    w("| measure | " + " | ".join(name for _, _, name in cols) + " |")
    w("|---" * (len(cols) + 1) + "|")
    for label, f in rows:
        w(f"| {label} | " + " | ".join(f(r) for r, _, _ in cols) + " |")
    w("")


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fan = res.get("fanout", [])
    ns = sorted({r["n"] for r in fan})
    if not ns:
        return
    fig, axes = plt.subplots(1, len(ns), figsize=(5.2 * len(ns), 4.4), squeeze=False)
    styles = {"papo": ("tab:blue", "-", "o"), "node": ("tab:red", "-", "s"), "raw-ws": ("tab:gray", ":", "^"),
              "papo-tmpfs": ("tab:blue", "--", "x"), "node-nopersist": ("tab:red", "--", "x")}
    for ax, n in zip(axes[0], ns):
        for s, (color, ls, mk) in styles.items():
            rows = sorted((r for r in fan if r["n"] == n and r["server"] == s),
                          key=lambda r: r.get("target_dps", r["dps"]))
            if not rows:
                continue
            xs = [r["dps"] for r in rows]
            ys = [max(r["p99_ms"], 0.1) for r in rows]
            ax.plot(xs, ys, color=color, linestyle=ls, marker=mk, label=NAMES[s])
            for r, x, y in zip(rows, xs, ys):
                if r["delivery_pct"] < 100:
                    ax.annotate(f"{r['delivery_pct']:.0f}%", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
        ax.axhline(250, color="k", linewidth=0.6, linestyle="--")
        ax.axhline(1000, color="k", linewidth=0.6, linestyle="-.")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import FuncFormatter
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_title(f"public room, {n:,} clients")
        ax.set_xlabel("deliveries per second (achieved)")
        ax.set_ylabel("p99 latency, ms")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Fan-out p99 latency vs load (loopback; 2 cores shared with the load generator)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cluster_tables(res, meta):
    out = []
    w = out.append
    rows = [r for r in res.get("cluster", []) if "skipped" not in r]
    w(f"Measured {meta.get('date')} on {meta.get('machine')}. Load average (1/5/15 min) before "
      f"the run: {' '.join(meta.get('load_before', []))}; at the start of the scenarios: "
      f"{res.get('load_at_start')}; at the end: {res.get('load_at_end')}. "
      f"Scenarios took {res.get('total_secs', 0):.0f} s{' (QUICK smoke run: small numbers, not results)' if res.get('quick') else ''}.")
    w("")
    w(f"Versions: Papo {meta.get('papo_rev')} ({meta.get('rustc')}); {meta.get('postgres')}; "
      f"{meta.get('redis')}. Backend: {res.get('cluster_env', {}).get('postgres', '?')} "
      f"(a fresh database per configuration, dropped afterwards), {res.get('cluster_env', {}).get('redis', '?')}.")
    w("")
    if res.get("cluster_skipped"):
        w(f"**SKIPPED**: {res['cluster_skipped']}")
        return "\n".join(out)
    for r in res.get("cluster", []):
        if "skipped" in r:
            w(f"- {NAMES.get(r['server'], r['server'])}, {fmt_int(r['n'])} clients: **SKIPPED**: {r['skipped']}")
    w("| N | deployment | msg/s | deliveries/s | delivered | sockets dropped | p50 ms | p99 ms | max ms | server CPU (all nodes) | µs / delivery | Postgres + Redis CPU | load-gen CPU | other CPU | server RSS (all nodes) | load avg | |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        w(f"| {fmt_int(r['n'])} | {NAMES.get(r['server'], r['server'])} | {r['msg_rate']:.3g} | {fmt_int(r['dps'])} | "
          f"{r['delivery_pct']:.2f}% | {r.get('disconnected', 0)} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['server_cpu_pct']:.0f}% | "
          f"{r['server_cpu_pct'] / 100 / max(r['dps'], 1) * 1e6:.1f} | {r.get('backend_cpu_pct', 0):.0f}% | "
          f"{r['loadgen_cpu_pct']:.0f}% | {r.get('other_cpu_pct', float('nan')):.0f}% | {kib(r['server_rss_kib'])} | {r['load']} | "
          f"{'ok' if sustained(r, 250) else ('≤ 1 s' if sustained(r, 1000) else '**over**')} |")
    w("")
    by = {}
    for r in rows:
        by.setdefault((r["server"], r["n"]), []).append(r)
    names = ["papo-sqlite-1", "papo-pg-1", "papo-pg-3"]
    w("Sustainable deliveries/s (highest step with 100% delivered and p99 within the objective; "
      "steps double, then ×1.25 steps refine the ladder around its first miss of the 250 ms objective):")
    w("")
    w("| N | p99 ≤ | " + " | ".join(NAMES[s] for s in names) + " | 3 nodes / 1 node (Postgres) | 3 nodes / 1 node (SQLite) |")
    w("|---:|---:|" + "---:|" * (len(names) + 2))
    for slo in SLOS:
        for n in sorted({r["n"] for r in rows}):
            ks = {s: knee(by.get((s, n), []), slo) for s in names}
            first = min((r.get("target_dps", 0) for r in rows), default=0)
            cells = [("—" if (s, n) not in by else fmt_int(ks[s]) if ks[s] else f"< {fmt_int(first)}") for s in names]
            def ratio(a, b):
                if not ks[b]:
                    return "—"
                if not ks[a]:
                    return f"< {first / ks[b]:.3f}"
                return f"{ks[a] / ks[b]:.2f}"
            r1 = ratio("papo-pg-3", "papo-pg-1")
            r2 = ratio("papo-pg-3", "papo-sqlite-1")
            w(f"| {fmt_int(n)} | {slo} ms | " + " | ".join(cells) + f" | {r1} | {r2} |")
    w("")
    warn = [(r, r.get("server_log_warnings", 0)) for r in rows if "server_log_warnings" in r]
    ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
    notes = [f"{NAMES.get(r['server'], r['server'])} at {fmt_int(r['n'])}: {c} (first: `{ansi.sub('', r.get('server_log_first_warning') or '')}`)"
             for r, c in warn if c]
    fails = [f"{NAMES.get(r['server'], r['server'])} at {fmt_int(r['n'])}: {r['connect_failed']}"
             for r in rows if r.get("step") == 1 and r.get("connect_failed")]
    w("Server log lines at WARN/ERROR during the steps (sum over the nodes): " + ("; ".join(notes) if notes else "none") +
      ". Failed connections: " + ("; ".join(fails) if fails else "none") + ".")
    return "\n".join(out)


def interest_table(before, res, meta):
    """Idle cost per connection and connect time: an earlier build (`before`, an idle run with
    its own `meta`) against this run, for the same scenario and sizes."""
    bm = before.get("meta", {})
    out = []
    w = out.append
    w(f"Before: Papo {bm.get('papo_rev')}, measured {bm.get('date')} "
      f"(`{bm.get('command')}`). After: Papo {meta.get('papo_rev')}, measured {meta.get('date')} "
      f"(its idle scenario, `bench/run.sh --scenarios idle,…`). Same machine, otherwise idle.")
    w("")
    w("| distinct users | Papo before: per conn / connect | Papo after: per conn / connect | Node (after run) | raw WebSocket (after run) |")
    w("|---|---|---|---|---|")
    def row(rows, server, n):
        return next((r for r in rows if r.get("server") == server and r.get("n") == n), None)
    def cell(r):
        if not r:
            return "–"
        return f"{r['per_conn_bytes'] / 1000:.1f} KB / {r['connect_secs']:.1f} s ({fmt_int(r['connect_rate'])}/s)"
    for n in sorted({r["n"] for r in res.get("idle", []) if r.get("server") == "papo"}):
        b, a = row(before.get("idle", []), "papo", n), row(res.get("idle", []), "papo", n)
        node, raw = row(res.get("idle", []), "node", n), row(res.get("idle", []), "raw-ws", n)
        w(f"| {fmt_int(n)} | {cell(b)} | {cell(a)} | {cell(node)} | {cell(raw)} |")
    return "\n".join(out)


def replace_between(doc, begin, end, text):
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        return head + begin + "\n" + text + "\n" + end + tail
    return doc.rstrip() + "\n\n" + begin + "\n" + text + "\n" + end + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("meta")
    ap.add_argument("--plot")
    ap.add_argument("--docs")
    ap.add_argument("--client", help="client.json of a `--scenarios client` run: replaces the client results")
    ap.add_argument("--client-meta", help="the meta file of that run")
    ap.add_argument("--client-before", help="a client run of an earlier build: a before/after table")
    ap.add_argument("--client-before-meta", help="the meta file of that run")
    ap.add_argument("--client-previous", help="the client run before this one of the same build")
    ap.add_argument("--client-previous-meta", help="the meta file of that run")
    ap.add_argument("--dm", help="dm.json of a `--scenarios dm` run: replaces the DM results")
    ap.add_argument("--dm-meta", help="the meta file of that run")
    ap.add_argument("--dm-previous", help="an earlier DM run of the same build (the second of two runs)")
    ap.add_argument("--fanout-before", help="a fan-out run of an earlier build: a before/after table")
    ap.add_argument("--fanout-before-meta", help="the meta file of that run")
    ap.add_argument("--fanout-previous", help="the run before this one of the same build (latest-previous.json)")
    ap.add_argument("--heap", help="heap.json of a `--scenarios heap` run: the idle heap profile")
    ap.add_argument("--heap-meta", help="the meta file of that run")
    ap.add_argument("--heap-before", help="a heap run of an earlier build: its numbers beside these")
    ap.add_argument("--heap-before-meta", help="the meta file of that run")
    ap.add_argument("--dm-before", help="a DM run of an earlier build: shown beside it")
    ap.add_argument("--dm-before-meta", help="the meta file of that run")
    ap.add_argument("--before", help="an idle run of an earlier build (with its meta inside): "
                    "writes the before/after idle table")
    a = ap.parse_args()
    res = json.load(open(a.results))
    try:
        meta = json.load(open(a.meta))
    except Exception:
        meta = {}
    def attach(path, meta_path, key, section, default):
        """res[key] = that file's `section`, and res[key + '_meta'] = its meta file."""
        if path:
            res[key] = json.load(open(path)).get(section, default)
            if meta_path:
                res[key + "_meta"] = json.load(open(meta_path))

    attach(a.client, a.client_meta, "client", "client", None)
    attach(a.client_before, a.client_before_meta, "client_before", "client", None)
    attach(a.client_previous, a.client_previous_meta, "client_previous", "client", None)
    attach(a.dm, a.dm_meta, "dm", "dm", [])
    attach(a.dm_previous, None, "dm_previous", "dm", [])
    if a.dm_previous:
        res["dm_previous_name"] = os.path.basename(a.dm_previous)
    attach(a.fanout_before, a.fanout_before_meta, "fanout_before", "fanout", [])
    attach(a.fanout_previous, None, "fanout_previous", "fanout", [])
    attach(a.heap, a.heap_meta, "heap", "heap", None)
    attach(a.heap_before, a.heap_before_meta, "heap_before", "heap", None)
    attach(a.dm_before, a.dm_before_meta, "dm_before", "dm", [])
    main_suite = any(res.get(k) for k in ("idle", "fanout", "dm", "storm", "client"))
    has_cluster = bool(res.get("cluster")) or bool(res.get("cluster_skipped"))
    if a.plot and res.get("fanout"):
        plot(res, a.plot)
        print(f"wrote {a.plot}", file=sys.stderr)
    text = tables(res, meta) if main_suite else None
    ctext = cluster_tables(res, meta) if has_cluster else None
    if a.docs:
        doc = open(a.docs).read()
        if text is not None:
            doc = replace_between(doc, BEGIN, END, text)
        if a.before and res.get("idle"):
            doc = replace_between(doc, IBEGIN, IEND, interest_table(json.load(open(a.before)), res, meta))
        if ctext is not None:
            doc = replace_between(doc, CBEGIN, CEND, ctext)
        open(a.docs, "w").write(doc)
        print(f"updated {a.docs}", file=sys.stderr)
    else:
        for t in (text, ctext):
            if t is not None:
                print(t)

if __name__ == "__main__":
    main()
