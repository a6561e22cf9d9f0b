/**
 * The web console's single HTML page: inline CSS and JavaScript, no build step, no external
 * resources. It follows `/api/events` (server-sent events, one `StatsResponse` a second; the first
 * carries the full rate history, later ones the newest sample) and redraws. Every string from the
 * network (hosts, applications, patterns) goes into the DOM as text, never as markup.
 */
import { createHash } from "node:crypto"

const STYLE = `
:root {
  --bg: #f5f6f8; --panel: #ffffff; --border: #e2e5ea; --text: #1d232b; --muted: #6a7380; --faint: #eef0f3;
  --accent: #2563eb; --good: #15803d; --warn: #b45309; --bad: #b91c1c;
  --c1: #2563eb; --c2: #0d9488; --c3: #d97706; --c4: #9333ea; --c5: #dc2626; --c6: #64748b;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1318; --panel: #171c23; --border: #2a313b; --text: #e3e7ec; --muted: #8b95a3; --faint: #1f252e;
    --accent: #60a5fa; --good: #4ade80; --warn: #fbbf24; --bad: #f87171;
    --c1: #60a5fa; --c2: #2dd4bf; --c3: #fbbf24; --c4: #c084fc; --c5: #f87171; --c6: #94a3b8;
  }
}
* { box-sizing: border-box; }
html, body { margin: 0; }
body {
  background: var(--bg); color: var(--text); font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; -webkit-font-smoothing: antialiased;
}
header.top {
  display: flex; align-items: center; justify-content: space-between; gap: 16px; padding: 10px 24px;
  background: var(--panel); border-bottom: 1px solid var(--border); position: sticky; top: 0; z-index: 2;
}
.brand { font-weight: 600; font-size: 15px; display: flex; align-items: center; gap: 10px; }
.brand .mark {
  width: 22px; height: 22px; border-radius: 6px; background: linear-gradient(135deg, var(--c1), var(--c2));
  display: inline-block;
}
.brand .sub { color: var(--muted); font-weight: 400; }
.status { display: flex; align-items: center; gap: 6px; color: var(--muted); font-size: 12px; }
.status .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--warn); }
.status.live .dot { background: var(--good); box-shadow: 0 0 0 3px color-mix(in srgb, var(--good) 25%, transparent); }
main { padding: 20px 24px 8px; max-width: 1440px; margin: 0 auto; }
.overview { display: grid; grid-template-columns: repeat(auto-fit, minmax(128px, 1fr)); gap: 12px; margin-bottom: 20px; }
.card { background: var(--panel); border: 1px solid var(--border); border-radius: 8px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 18px; font-weight: 600; margin-top: 2px; font-variant-numeric: tabular-nums;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.card .note { color: var(--muted); font-size: 11px; font-variant-numeric: tabular-nums; }
.card.bad { border-color: var(--bad); } .card.bad .value { color: var(--bad); }
section.conn { background: var(--panel); border: 1px solid var(--border); border-radius: 10px; margin-bottom: 20px; }
.conn-head { display: flex; align-items: baseline; justify-content: space-between; gap: 12px; flex-wrap: wrap;
  padding: 14px 18px; border-bottom: 1px solid var(--border); }
.conn-head h2 { margin: 0; font-size: 16px; font-family: var(--mono); font-weight: 600; }
.conn-head .meta { color: var(--muted); font-size: 12px; }
.conn-body { padding: 16px 18px 18px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px; margin-bottom: 16px; }
.kpi { border: 1px solid var(--border); border-radius: 8px; padding: 8px 12px; }
.kpi .label { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .04em; }
.kpi .rate { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.kpi .rate small { font-size: 11px; font-weight: 500; color: var(--muted); margin-left: 2px; }
.kpi .sub { color: var(--muted); font-size: 11px; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(380px, 100%), 1fr)); gap: 14px; margin-bottom: 16px; }
.chart { border: 1px solid var(--border); border-radius: 8px; padding: 10px 12px 8px; }
.chart-head { display: flex; justify-content: space-between; align-items: baseline; margin-bottom: 6px; }
.chart-head .title { font-weight: 600; }
.chart-head .scale { color: var(--muted); font-size: 11px; font-variant-numeric: tabular-nums; }
.chart svg { display: block; width: 100%; height: 120px; background: var(--faint); border-radius: 4px; }
.chart svg .grid { stroke: var(--border); stroke-width: 1; }
.chart svg polygon { fill-opacity: .07; stroke: none; }
.chart svg polyline { fill: none; stroke-width: 1.6; vector-effect: non-scaling-stroke; stroke-linejoin: round; }
.chart .axis { display: flex; justify-content: space-between; color: var(--muted); font-size: 10px; margin-top: 2px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 6px; font-size: 11px; color: var(--muted); }
.legend span { display: inline-flex; align-items: center; gap: 5px; font-variant-numeric: tabular-nums; }
.legend i { width: 10px; height: 3px; border-radius: 2px; display: inline-block; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(420px, 100%), 1fr)); gap: 14px; }
.block { border: 1px solid var(--border); border-radius: 8px; overflow: hidden; }
.block.wide { grid-column: 1 / -1; }
.block h3 { margin: 0; padding: 7px 12px; font-size: 12px; font-weight: 600; background: var(--faint);
  border-bottom: 1px solid var(--border); display: flex; justify-content: space-between; }
.block h3 .count { color: var(--muted); font-weight: 500; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--faint); }
th { color: var(--muted); font-weight: 500; font-size: 11px; text-transform: uppercase; letter-spacing: .03em; }
tr:last-child td { border-bottom: none; }
td.num, th.num { text-align: right; }
td.mono { font-family: var(--mono); font-size: 12px; }
td.empty { color: var(--muted); font-style: italic; text-align: center; padding: 10px; }
tr.group td { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .04em;
  background: var(--faint); padding-top: 4px; padding-bottom: 4px; }
.counters td.num { font-weight: 500; }
.nz-bad { color: var(--bad); font-weight: 600; }
.nz-warn { color: var(--warn); font-weight: 600; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px; font-weight: 600;
  border: 1px solid currentColor; }
.badge.active { color: var(--good); } .badge.restarted { color: var(--warn); }
.badge.closed { color: var(--muted); } .badge.gone { color: var(--bad); }
.badge.connected { color: var(--good); } .badge.resumable { color: var(--warn); }
.bar { height: 6px; border-radius: 3px; background: var(--c3); min-width: 2px; }
.barcell { width: 40%; }
.empty-state { background: var(--panel); border: 1px dashed var(--border); border-radius: 10px; padding: 36px;
  text-align: center; color: var(--muted); }
footer { max-width: 1440px; margin: 0 auto; padding: 6px 24px 24px; color: var(--muted); font-size: 12px; }
footer a { color: var(--accent); text-decoration: none; margin-right: 14px; font-family: var(--mono); }
footer a:hover { text-decoration: underline; }
`

const SCRIPT = `
"use strict";
const WINDOW_MS = 5 * 60 * 1000;
// The chart's time axis grows with the history it has, up to WINDOW_MS, so a young console
// does not squeeze its first seconds into the right edge.
const WINDOWS_MS = [10e3, 30e3, 60e3, 120e3, WINDOW_MS];
const MAX_SAMPLES = 300;
let data = null;
const series = new Map(); // connection -> { openedAt, samples }
let lastEventAt = 0;

// ---- DOM helpers: text only, never markup from the network ----
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v; else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(4)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// ---- formatting ----
const intFmt = new Intl.NumberFormat("en-US");
const fmtInt = (n) => intFmt.format(n);
function fmtRate(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  if (n >= 100) return fmtInt(Math.round(n));
  if (n === 0) return "0";
  return n.toFixed(1);
}
function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
}
function fmtBytesRate(n) { return fmtBytes(n) + "/s"; }
function fmtDuration(ms) {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  const p = (x) => String(x).padStart(2, "0");
  if (d > 0) return d + "d " + p(hh) + "h " + p(mm) + "m";
  if (hh > 0) return hh + "h " + p(mm) + "m " + p(s) + "s";
  if (mm > 0) return mm + "m " + p(s) + "s";
  return s + "s";
}
const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
const fmtDateTime = (ms) => new Date(ms).toLocaleString([], { hour12: false });
function fmtAgo(ms) {
  if (ms < 1000) return "just now";
  if (ms < 60000) return Math.round(ms / 1000) + " s ago";
  if (ms < 3600000) return Math.round(ms / 60000) + " min ago";
  return Math.round(ms / 3600000) + " h ago";
}
function fmtSpan(ms) { return ms >= 60000 ? ms / 60000 + " min" : ms / 1000 + " s"; }
function windowFor(samples, now) {
  const span = samples.length ? now - samples[0].at : 0;
  for (const w of WINDOWS_MS) if (span <= w) return w;
  return WINDOW_MS;
}
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---- data ----
function merge(stats) {
  const seen = new Set();
  for (const c of stats.connections) {
    seen.add(c.connection);
    let entry = series.get(c.connection);
    if (!entry || entry.openedAt !== c.openedAt || c.history.length > 1) {
      entry = { openedAt: c.openedAt, samples: c.history.slice() };
      series.set(c.connection, entry);
      continue;
    }
    const last = entry.samples.length ? entry.samples[entry.samples.length - 1].at : -Infinity;
    for (const sample of c.history) if (sample.at > last) entry.samples.push(sample);
    if (entry.samples.length > MAX_SAMPLES) entry.samples.splice(0, entry.samples.length - MAX_SAMPLES);
  }
  for (const key of Array.from(series.keys())) if (!seen.has(key)) series.delete(key);
}

// ---- rendering ----
function card(label, value, note, attrs) {
  return h("div", Object.assign({ class: "card" }, attrs || {}),
    h("div", { class: "label" }, label), h("div", { class: "value", title: value }, value),
    note ? h("div", { class: "note" }, note) : null);
}

function renderOverview(stats) {
  let inRate = 0, outRate = 0, remotes = 0, losses = 0, lostSegments = 0;
  let naksSent = 0, naksReceived = 0, retransSent = 0, retransReceived = 0;
  for (const c of stats.connections) {
    inRate += c.rates.current.updatesIn; outRate += c.rates.current.updatesOut;
    remotes += c.remoteSessions.filter((r) => r.state === "active").length;
    losses += c.counters.lossEvents; lostSegments += c.counters.lostSegments;
    naksSent += c.counters.naksSent; naksReceived += c.counters.naksReceived;
    retransSent += c.counters.retransmissionsSent; retransReceived += c.counters.retransmissionsReceived;
  }
  return h("div", { class: "overview", id: "overview" },
    card("Application", stats.application, "pid " + stats.pid),
    card("Host", stats.host),
    card("Started", fmtTime(stats.startedAt), new Date(stats.startedAt).toLocaleDateString()),
    card("Uptime", fmtDuration(stats.uptimeMs), null, { "data-testid": "uptime" }),
    card("Connections", String(stats.connections.length),
      remotes + " active remote session" + (remotes === 1 ? "" : "s"), { "data-testid": "connection-count" }),
    card("Updates in", fmtRate(inRate) + "/s", "all connections"),
    card("Updates out", fmtRate(outRate) + "/s", "all connections"),
    card("NAKs", fmtInt(naksSent) + " / " + fmtInt(naksReceived),
      "sent / received; retrans. " + fmtInt(retransSent) + " / " + fmtInt(retransReceived)),
    card("Losses", fmtInt(losses), fmtInt(lostSegments) + " segments irrecoverable",
      { "data-testid": "losses", class: "card" + (losses > 0 ? " bad" : "") }));
}

function kpi(label, field, c, fmt, totalFmt) {
  const cur = c.rates.current[field], peak = c.rates.peak[field], total = c.counters[field];
  return h("div", { class: "kpi", "data-rate": field, "data-value": cur },
    h("div", { class: "label" }, label),
    h("div", { class: "rate" }, fmt(cur), h("small", null, fmt === fmtBytesRate ? "" : "/s")),
    h("div", { class: "sub" }, "peak " + fmt(peak) + (fmt === fmtBytesRate ? "" : "/s") + " · total " + totalFmt(total)));
}

function chart(title, samples, now, lines, format) {
  const W = 600, H = 120, win = windowFor(samples, now), start = now - win;
  let max = 0;
  for (const p of samples) if (p.at >= start) for (const l of lines) max = Math.max(max, p.rates[l.field]);
  max = niceMax(max);
  const svg = s("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": title });
  for (const f of [0.25, 0.5, 0.75]) svg.append(s("line", { class: "grid", x1: 0, x2: W, y1: H * f, y2: H * f }));
  for (const l of lines) {
    const pts = [];
    for (const p of samples) {
      if (p.at < start) continue;
      const x = ((p.at - start) / win) * W;
      const y = H - (p.rates[l.field] / max) * (H - 4) - 2;
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    if (pts.length === 1) pts.unshift("0," + pts[0].split(",")[1]);
    if (!pts.length) continue;
    const first = pts[0].split(",")[0], last = pts[pts.length - 1].split(",")[0];
    svg.append(s("polygon", { points: first + "," + H + " " + pts.join(" ") + " " + last + "," + H,
      style: "fill:var(" + l.color + ")" }));
    svg.append(s("polyline", { points: pts.join(" "), style: "stroke:var(" + l.color + ")" }));
  }
  const last = samples.length ? samples[samples.length - 1].rates : null;
  return h("div", { class: "chart" },
    h("div", { class: "chart-head" }, h("span", { class: "title" }, title),
      h("span", { class: "scale" }, "max " + format(max))),
    svg,
    h("div", { class: "axis" }, h("span", null, "−" + fmtSpan(win)), h("span", null, "−" + fmtSpan(win / 2)),
      h("span", null, "now")),
    h("div", { class: "legend" }, lines.map((l) => h("span", null, h("i", { style: "background:var(" + l.color + ")" }),
      l.label + " " + (last ? format(last[l.field]) : "–")))));
}

function table(headers, rows, emptyText) {
  const thead = h("thead", null, h("tr", null, headers.map((x) =>
    h("th", { class: x.num ? "num" : null }, x.label))));
  const body = rows.length ? rows : [h("tr", null, h("td", { class: "empty", colspan: headers.length }, emptyText))];
  return h("div", { class: "scroll" }, h("table", null, thead, h("tbody", null, body)));
}
function block(title, count, content, wide) {
  return h("div", { class: "block" + (wide ? " wide" : "") },
    h("h3", null, h("span", null, title), count === null ? null : h("span", { class: "count" }, String(count))), content);
}
const num = (v, extra) => h("td", { class: "num" + (extra ? " " + extra : "") }, v);

const COUNTER_GROUPS = [
  ["Traffic", [
    ["Datagrams in", "datagramsIn"], ["Datagrams out", "datagramsOut"],
    ["Updates in", "updatesIn"], ["Updates out", "updatesOut"],
    ["Bytes in", "bytesIn", fmtBytes], ["Bytes out", "bytesOut", fmtBytes]]],
  ["Recovery", [
    ["NAKs sent", "naksSent"], ["NAKs received", "naksReceived"],
    ["Retransmissions sent", "retransmissionsSent"], ["Retransmissions received", "retransmissionsReceived"],
    ["'Lost' answers sent", "lostPacketsSent", null, "warn"]]],
  ["Integrity", [
    ["Loss events", "lossEvents", null, "bad"], ["Segments lost", "lostSegments", null, "bad"],
    ["Duplicates dropped", "duplicates"], ["Undecodable datagrams", "decodeErrors", null, "warn"],
    ["On the wrong channel (port)", "wrongChannel", null, "warn"],
    ["Beyond the reorder window", "outOfWindow", null, "warn"],
    ["Subscriber overflows", "subscriberOverflows", null, "bad"],
    ["Updates dropped by full subscribers", "subscriberDrops", null, "bad"],
    ["Invalid topics dropped", "invalidTopicsDropped", null, "warn"], ["Engine faults", "engineFaults", null, "bad"]]],
  ["Flow control", [
    ["Status packets sent", "statusSent"], ["Status packets received", "statusReceived"],
    ["Segments that waited for the window", "flowControlWaits"],
    ["Status packets ignored (conflict, cap)", "statusRejected", null, "warn"],
    ["Status positions for unknown sessions", "statusUnknownSessions"],
    ["Receivers left out (stalled)", "receiversStalled", null, "warn"]]],
  ["Security", [
    ["Security mismatches", "securityMismatch", null, "warn"], ["Unknown key ids", "unknownKeyIds", null, "warn"],
    ["Authentication failures", "authFailures", null, "bad"], ["Replays dropped", "replaysDropped", null, "warn"],
    ["Stale datagrams dropped", "staleDropped", null, "warn"]]],
  ["Hostile traffic", [
    ["Implausible claims dropped", "implausible", null, "warn"], ["Conflicts", "conflicts", null, "warn"],
    ["Sessions refused (cap)", "sessionsRejected", null, "warn"],
    ["NAKs throttled", "naksThrottled", null, "warn"],
    ["Buffer overruns (memory bound)", "bufferOverruns", null, "bad"]]]
];

function countersBlock(c) {
  const rows = [];
  for (const [group, items] of COUNTER_GROUPS) {
    rows.push(h("tr", { class: "group" }, h("td", { colspan: 2 }, group)));
    for (const [label, field, fmt, tone] of items) {
      const v = c.counters[field];
      rows.push(h("tr", null, h("td", null, label),
        h("td", { class: "num" + (tone && v > 0 ? " nz-" + tone : ""), "data-counter": field, "data-value": v },
          (fmt || fmtInt)(v))));
    }
  }
  const k = c.kernelReceiveBufferErrors;
  rows.push(h("tr", { class: "group" }, h("td", { colspan: 2 }, "Socket")));
  const sock = [
    ["Kernel receive-buffer drops (host-wide)", k === null ? "n/a" : fmtInt(k), k > 0 ? "warn" : null, "kernelReceiveBufferErrors", k],
    ["Receive-queue drops", fmtInt(c.socket.queueDrops), c.socket.queueDrops > 0 ? "warn" : null, "queueDrops", c.socket.queueDrops],
    ["Send errors", fmtInt(c.socket.sendErrors), c.socket.sendErrors > 0 ? "bad" : null, "sendErrors", c.socket.sendErrors],
    ["Receive buffer", c.socket.recvBufferSize ? fmtBytes(c.socket.recvBufferSize) : "n/a"],
    ["Send buffer", c.socket.sendBufferSize ? fmtBytes(c.socket.sendBufferSize) : "n/a"],
    ["UDP backend", c.socket.backend === "native" ? "native (recvmmsg / sendmmsg)" : c.socket.backend || "n/a"]
  ];
  const seg = c.socket.segmentation;
  if (seg) sock.push(
    ["GSO sends (datagrams)", fmtInt(seg.gsoSends) + " (" + fmtInt(seg.gsoDatagrams) + ")", null, "gsoSends", seg.gsoSends],
    ["GRO reads (datagrams)", fmtInt(seg.groReads) + " (" + fmtInt(seg.groDatagrams) + ")", null, "groReads", seg.groReads],
    ["Reads into reused memory", fmtInt(seg.reusedReads), null, "reusedReads", seg.reusedReads]);
  for (const [label, text, tone, field, v] of sock) rows.push(h("tr", null, h("td", null, label),
    h("td", { class: "num" + (tone ? " nz-" + tone : ""), "data-counter": field, "data-value": v }, text)));
  if (c.socket.lastSendError) rows.push(h("tr", null, h("td", null, "Last send error"),
    h("td", { class: "num nz-bad" }, c.socket.lastSendError)));
  return block("Counters", null, h("table", { class: "counters" }, h("tbody", null, rows)));
}

function renderConnection(c, now) {
  const samples = (series.get(c.connection) || { samples: [] }).samples;
  const active = c.remoteSessions.filter((r) => r.state === "active").length;
  const head = h("div", { class: "conn-head" },
    h("h2", null, c.connection),
    h("div", { class: "meta" }, "opened " + fmtTime(c.openedAt) + " · " + c.publishers.length + " publisher" +
      (c.publishers.length === 1 ? "" : "s") + " · " + c.subscriptions.length + " subscription" +
      (c.subscriptions.length === 1 ? "" : "s") + " · " + active + " active remote session" + (active === 1 ? "" : "s") +
      " · " + c.remoteReceivers.length + " remote receiver" + (c.remoteReceivers.length === 1 ? "" : "s")));

  const kpis = h("div", { class: "kpis" },
    kpi("Updates in", "updatesIn", c, fmtRate, fmtInt), kpi("Updates out", "updatesOut", c, fmtRate, fmtInt),
    kpi("Datagrams in", "datagramsIn", c, fmtRate, fmtInt), kpi("Datagrams out", "datagramsOut", c, fmtRate, fmtInt),
    kpi("Bytes in", "bytesIn", c, fmtBytesRate, fmtBytes), kpi("Bytes out", "bytesOut", c, fmtBytesRate, fmtBytes));

  const charts = h("div", { class: "charts" },
    chart("Traffic · updates and datagrams per second", samples, now, [
      { field: "updatesIn", label: "updates in", color: "--c1" },
      { field: "updatesOut", label: "updates out", color: "--c2" },
      { field: "datagramsIn", label: "datagrams in", color: "--c6" },
      { field: "datagramsOut", label: "datagrams out", color: "--c4" }], fmtRate),
    chart("Recovery · per second", samples, now, [
      { field: "naksSent", label: "NAKs sent", color: "--c3" },
      { field: "naksReceived", label: "NAKs received", color: "--c5" },
      { field: "retransmissionsSent", label: "retrans. sent", color: "--c4" },
      { field: "retransmissionsReceived", label: "retrans. received", color: "--c2" }], fmtRate));

  const publishers = table(
    [{ label: "Session" }, { label: "Index", num: 1 }, { label: "Highest seq", num: 1 },
     { label: "Cached segments", num: 1 }, { label: "Cached", num: 1 }],
    c.publishers.map((p) => h("tr", null, h("td", { class: "mono" }, p.sessionId), num(p.senderIndex),
      num(fmtInt(p.highestSeq)), num(fmtInt(p.cachedSegments)), num(fmtBytes(p.cachedBytes)))),
    "no publishers on this connection");

  const subscriptions = table(
    [{ label: "Pattern" }, { label: "Buffered", num: 1 }, { label: "Delivered", num: 1 }, { label: "Dropped", num: 1 }],
    c.subscriptions.map((x) => h("tr", null, h("td", { class: "mono" }, x.pattern), num(fmtInt(x.buffered)),
      num(fmtInt(x.delivered)), num(fmtInt(x.dropped), x.dropped > 0 ? "nz-bad" : null))),
    "no subscriptions");

  const remotes = table(
    [{ label: "Host" }, { label: "Application" }, { label: "Session" }, { label: "State" },
     { label: "Highest seq", num: 1 }, { label: "Delivered", num: 1 }, { label: "Last heard" },
     { label: "NAKs sent", num: 1 }, { label: "Retrans. recv", num: 1 }, { label: "Lost", num: 1 },
     { label: "Duplicates", num: 1 }],
    c.remoteSessions.map((r) => h("tr", { "data-session": r.sessionId },
      h("td", null, r.host), h("td", null, r.application), h("td", { class: "mono", title: r.address }, r.sessionId),
      h("td", null, h("span", { class: "badge " + r.state }, r.state)),
      num(fmtInt(r.highestSeq)), num(fmtInt(r.delivered)),
      h("td", { title: fmtDateTime(r.lastHeardAt) }, fmtAgo(Math.max(0, now - r.lastHeardAt))),
      num(fmtInt(r.naksSent)), num(fmtInt(r.retransmissionsReceived)),
      num(fmtInt(r.lostSegments), r.lostSegments > 0 ? "nz-bad" : null), num(fmtInt(r.duplicates)))),
    "no remote senders heard yet");

  const receivers = table(
    [{ label: "Name" }, { label: "Host" }, { label: "Application" }, { label: "Position", num: 1 },
     { label: "Lag (segments)", num: 1 }, { label: "Window" }, { label: "Joined" }, { label: "Last heard" }],
    c.remoteReceivers.map((r) => {
      const lag = r.positions.reduce((m, p) => Math.max(m, p.lag), 0);
      return h("tr", { "data-receiver": r.sessionId },
        h("td", { class: "mono", title: r.sessionId }, r.name || "—"), h("td", { title: r.address }, r.host),
        h("td", null, r.application),
        num(r.positions.map((p) => fmtInt(p.position)).join(" · ") || "—"),
        num(fmtInt(lag), lag > r.windowSegments / 2 ? "nz-warn" : null),
        h("td", null, fmtBytes(r.windowBytes) + " / " + fmtInt(r.windowSegments) + " seg"),
        h("td", { title: fmtDateTime(r.joinedAt) }, fmtTime(r.joinedAt)),
        h("td", { title: fmtDateTime(r.lastHeardAt) }, fmtAgo(Math.max(0, now - r.lastHeardAt))));
    }),
    "no receivers have reported status");

  const maxNaks = c.nakRequesters.reduce((m, r) => Math.max(m, r.naks), 0) || 1;
  const requesters = table(
    [{ label: "Host" }, { label: "NAKs received", num: 1 }, { label: "" }],
    c.nakRequesters.slice(0, 10).map((r) => h("tr", null, h("td", null, r.host), num(fmtInt(r.naks)),
      h("td", { class: "barcell" }, h("div", { class: "bar", style: "width:" + ((r.naks / maxNaks) * 100).toFixed(1) + "%" })))),
    "no NAKs received");

  const losses = table(
    [{ label: "Time" }, { label: "Source" }, { label: "Session" }, { label: "Sequences" },
     { label: "Segments", num: 1 }, { label: "Reason" }],
    c.recentLosses.slice().reverse().map((l) => h("tr", { "data-loss": l.sessionId + ":" + l.firstSeq },
      h("td", null, fmtTime(l.at)),
      h("td", null, l.application + "@" + l.host), h("td", { class: "mono" }, l.sessionId),
      h("td", { class: "mono" }, l.firstSeq === l.lastSeq ? String(l.firstSeq) : l.firstSeq + "–" + l.lastSeq),
      num(fmtInt(l.lastSeq - l.firstSeq + 1)), h("td", { class: "nz-bad" }, l.reason))),
    "no irrecoverable losses");

  const body = h("div", { class: "conn-body" }, kpis, charts,
    h("div", { class: "grid2" },
      countersBlock(c),
      h("div", { style: "display:grid;gap:14px;align-content:start" },
        block("Top NAK requesters", c.nakRequesters.length, requesters),
        block("Publishers", c.publishers.length, publishers),
        block("Subscriptions", c.subscriptions.length, subscriptions)),
      block("Remote sessions", c.remoteSessions.length, remotes, true),
      block("Remote receivers", c.remoteReceivers.length, receivers, true),
      block("Recent losses", c.recentLosses.length, losses, true)));
  return h("section", { class: "conn", "data-conn": c.connection }, head, body);
}

// A gateway in this process: its clients (connected, or away and resumable) and its counters.
function renderGateway(g, now) {
  const k = g.counters;
  const connected = g.clients.filter((c) => c.connected).length;
  const head = h("div", { class: "conn-head" },
    h("h2", null, "Gateway " + g.url),
    h("div", { class: "meta" }, connected + " connected · " + (g.clients.length - connected) + " resumable · " +
      fmtInt(k.hellos) + " hellos · " + fmtInt(k.resumes) + " resumes · " + fmtInt(k.socketsRefused) + " refused · " +
      fmtInt(k.gapsSent) + " gaps sent · " + fmtInt(k.badFrames) + " bad frames"));
  const clients = table(
    [{ label: "Name" }, { label: "Address" }, { label: "State" }, { label: "Subscriptions" },
     { label: "Delivered", num: 1 }, { label: "Buffered / replay", num: 1 }, { label: "Unsent", num: 1 },
     { label: "Published", num: 1 }, { label: "Dropped", num: 1 }],
    g.clients.map((c) => h("tr", { "data-gateway-client": c.name },
      h("td", { class: "mono" }, c.name), h("td", null, c.address || "—"),
      h("td", c.detachedAt === null ? null : { title: "away since " + fmtDateTime(c.detachedAt) },
        h("span", { class: "badge " + (c.connected ? "connected" : "resumable") },
          c.connected ? "connected" : "resumable · " + fmtAgo(Math.max(0, now - c.detachedAt)))),
      h("td", { class: "mono" }, c.subscriptions.map((s) => s.pattern).join(" ") || "—"),
      num(fmtInt(c.delivered)), num(fmtInt(c.buffered) + " · " + fmtBytes(c.bufferedBytes)), num(fmtInt(c.unsent)),
      num(fmtInt(c.published)), num(fmtInt(c.dropped), c.dropped > 0 ? "nz-bad" : null))),
    "no clients");
  return h("section", { class: "conn", "data-gateway": g.url }, head,
    h("div", { class: "conn-body" }, block("Gateway clients", g.clients.length, clients, true)));
}

function render() {
  if (!data) return;
  document.title = data.application + "@" + data.host + " · Distributor console";
  const conns = data.connections.length
    ? data.connections.map((c) => renderConnection(c, data.now))
    : [h("div", { class: "empty-state" }, "No connections are open in this Distributor.")];
  const gateways = (data.gateways || []).map((g) => renderGateway(g, data.now));
  document.getElementById("app").replaceChildren(renderOverview(data), ...conns, ...gateways);
}

function setStatus() {
  const el = document.getElementById("status");
  const live = Date.now() - lastEventAt < 3500;
  el.className = "status" + (live ? " live" : "");
  el.replaceChildren(h("span", { class: "dot" }),
    live ? "live · updated " + fmtTime(data ? data.now : Date.now()) : lastEventAt ? "reconnecting…" : "connecting…");
}

function accept(stats) {
  data = stats;
  lastEventAt = Date.now();
  merge(stats);
  render();
  setStatus();
}

function poll() {
  fetch("api/stats?history=" + (data ? 5 : MAX_SAMPLES), { cache: "no-store" })
    .then((r) => r.json()).then(accept).catch(() => {}).finally(() => setTimeout(poll, 1000));
}

if (typeof EventSource === "function") {
  const es = new EventSource("api/events");
  es.addEventListener("stats", (e) => accept(JSON.parse(e.data)));
} else {
  poll();
}
setInterval(setStatus, 1000);
`

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Distributor console</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='4' fill='%232563eb'/%3E%3Cpath d='M4 11l3-4 2 2 3-5' stroke='white' stroke-width='1.6' fill='none'/%3E%3C/svg%3E">
<style>${STYLE}</style>
</head>
<body>
<header class="top">
  <div class="brand"><span class="mark"></span>effect-distributor <span class="sub">web console</span></div>
  <div id="status" class="status"><span class="dot"></span>connecting…</div>
</header>
<main id="app"></main>
<footer>
  <a href="api/stats">/api/stats</a><a href="api/events">/api/events</a><a href="metrics">/metrics</a><a href="healthz">/healthz</a>
</footer>
<script>${SCRIPT}</script>
</body>
</html>
`

const sha256 = (text: string): string => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`

/** Only this page's own inline script and style may run; it may only talk to its own origin. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  // 'unsafe-inline' (no hash, which would disable it): the script sets style attributes (chart
  // colours, bar widths). Network data only ever reaches the DOM as text.
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")
