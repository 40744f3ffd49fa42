// The dashboard page: state from the feed, the moment shown, and the views.
//
// S.latest is the newest snapshot; S.view the one shown (the newest while
// following live, else the one chosen on the timeline, fetched from the
// dashboard's store). Every view draws S.view; charts and events stop at its
// moment when it is not live.

import * as fmt from "./format.js";
import { api, getJson, openFeed } from "./feed.js";
import * as tables from "./tables.js";
import { lineChart } from "./charts.js";
import * as dom from "./dom.js";
import * as nodes from "./nodes.js";
import { peerInfoBlock, renderNodeInfo } from "./node.js";
import * as ext from "./views_ext.js";
import { peersView } from "./peers.js";
import { renderSave } from "./save.js";

const MAX_EVENTS = 10000; // events this page keeps (the dashboard keeps more)
const WAITING = "waiting for the first snapshot…";
const $ = (id) => document.getElementById(id);

const S = {
  status: null,
  runtime: null,
  timeline: [], // instant_ts of every stored snapshot, oldest first
  series: [], // one summary per timeline entry
  latest: null,
  view: null,
  viewTs: null, // null: follow live
  events: [],
  eventCounts: new Map(),
  eventTypes: new Set(),
  eventsVersion: 0,
  eventsShown: -1,
  typeFilter: new Set(),
  selectedConn: null,
  trafficConn: "",
  connSeries: [],
  tab: "connections",
  linkUp: false,
  hellos: 0, // hello messages received (each replaces the whole picture)
  // The snapshot a delta is of: {seq, data}, the last snapshot message (or hello's latest)
  // received; null: none, the next delta cannot be read (a fresh hello is asked for).
  pageBase: null,
  deltas: 0, // delta messages applied
  resyncs: 0, // fresh hellos asked for (a delta of a snapshot this page has not)
};

// ------------------------------------------------------------------ messages

// How long the page takes to show a snapshot: from its message's arrival to the
// view shown redrawn (script, style and layout), for the benchmark
// (bench/dashboard_view.py) and the curious: {view, ms, parse, wait, header, draw}.
const KEEP_TIMINGS = 1000;
const drawTimings = [];
let snapshotArrived = null; // {arrived, handled}: the first snapshot not drawn yet

function onMessage(m, arrived = performance.now()) {
  switch (m.t) {
    case "hello": onHello(m); break;
    case "snapshot":
    case "delta": {
      const data = m.t === "delta" ? applyDelta(m) : adoptSnapshot(m.data);
      if (!data) break;
      S.pageBase = { seq: m.seq, data };
      onSnapshot(m, data);
      snapshotArrived ??= { arrived, handled: performance.now() };
      break;
    }
    case "streams": if (streamsT) streamsT.offer(m); break; // its page of the snapshot before it
    case "event": addEvent(m.e); S.eventsVersion += 1; break;
    case "runtime": S.runtime = m.runtime; registerTypes(m.runtime.eventTypes); break;
    case "status": S.status = m.status; break;
    case "nodes": nodes.setNodes(m.nodes); break;
    default: console.warn("unknown feed message", m.t);
  }
  schedule();
}

function onHello(m) {
  S.hellos += 1;
  streamsAsked = null; // a new feed (or a resync): tell it again which page is shown
  nodes.setNodes(m.nodes);
  const samePeer = S.runtime && m.runtime && S.runtime.peerId === m.runtime.peerId;
  S.status = m.status;
  S.runtime = m.runtime;
  S.timeline = m.timeline;
  S.series = m.series;
  S.latest = adoptSnapshot(m.latest);
  S.pageBase = typeof m.seq === "number" && S.latest ? { seq: m.seq, data: S.latest } : null;
  resyncAsked = false;
  S.viewTs = null;
  S.view = m.latest;
  S.events = [];
  S.eventCounts = new Map();
  S.eventTypes = new Set();
  registerTypes(m.runtime?.eventTypes || []);
  registerTypes(m.eventTypes || []);
  for (const e of m.events) addEvent(e);
  S.eventsVersion += 1;
  if (!samePeer) {
    S.selectedConn = null;
    S.trafficConn = "";
    S.connSeries = [];
    S.typeFilter.clear();
  } else if (S.trafficConn) {
    loadConnSeries(S.trafficConn);
  }
}

// A snapshot message's data (page_json.py's PAGE_SNAPSHOT) has each connection's
// stream count (ns) and protocols (sp, an index into its lists), not its streams: the
// Streams tables ask the dashboard for the page of streams they show (tables.js
// streamsTable, GET /api/streams). A hello's (the stored shape) has the streams
// themselves: adoptSnapshot counts them and lets them go, so that both shapes have the
// same fields, c.ns and c.protoList (the distinct protocols of its streams).
function adoptSnapshot(data) {
  if (!data || !Array.isArray(data.conns)) return data;
  if (Array.isArray(data.lists)) {
    const lists = data.lists;
    for (const c of data.conns) {
      c.protoList = lists[c.sp] || [];
      if (c.peerInfo) c.peerInfo.protocols = lists[c.peerInfo.protocols] || [];
    }
    delete data.lists; // its last property: it keeps its fast shape
  } else {
    for (const c of data.conns) {
      const streams = Array.isArray(c.streams) ? c.streams : [];
      c.ns = streams.length;
      c.protoList = [...new Set(streams.map((st) => st.proto))];
      delete c.streams;
    }
  }
  return data;
}

// A delta (page_json.py's PAGE_DELTA) gives the snapshot as what changed since the one
// numbered m.base: applied to that one (S.pageBase), it is a new snapshot of the same
// shape as adoptSnapshot makes (the base is not changed: a view may still show it). A
// delta of another base (a message this page missed) or that does not fit its base is
// not applied: the page asks for a fresh hello (once until it comes) and shows what it
// showed until then.
let resyncAsked = false;
function askResync() {
  if (!resyncAsked) { resyncAsked = true; S.resyncs += 1; feed.resync(); }
  return null;
}
const DELTA_OWN = new Set(["conns", "lists"]);
function applyDelta(m) {
  const base = S.pageBase;
  const d = m.data;
  if (!base || base.seq !== m.base || !d || !Array.isArray(d.conns) || !Array.isArray(d.lists)) return askResync();
  const was = base.data.conns;
  const lists = d.lists;
  const conns = new Array(d.conns.length);
  for (let i = 0; i < conns.length; i += 1) {
    const e = d.conns[i];
    let c;
    if (typeof e === "number" || Array.isArray(e)) {
      const old = was[Array.isArray(e) ? e[0] : e];
      if (!old || typeof old !== "object") return askResync();
      if (Array.isArray(e)) {
        const fields = e[1] || {};
        c = { ...old };
        Object.assign(c, fields);
        if ("sp" in fields) c.protoList = lists[fields.sp] || [];
        if (fields.peerInfo) c.peerInfo.protocols = lists[fields.peerInfo.protocols] || [];
      } else c = old; // unchanged: the same object (a connection is never changed once adopted)
    } else if (e && typeof e === "object") {
      c = e;
      c.protoList = lists[c.sp] || [];
      if (c.peerInfo) c.peerInfo.protocols = lists[c.peerInfo.protocols] || [];
    } else return askResync();
    conns[i] = c;
  }
  const data = {};
  for (const k of Object.keys(base.data)) if (k !== "conns") data[k] = base.data[k];
  for (const k of Object.keys(d)) if (!DELTA_OWN.has(k)) data[k] = d[k];
  data.conns = conns;
  S.deltas += 1;
  return data;
}

function onSnapshot(m, data) {
  const ts = data.ts;
  const n = S.timeline.length;
  if (n === 0 || ts > S.timeline[n - 1]) {
    S.timeline.push(ts);
    S.series.push(m.summary);
  } else {
    const i = bisectLeft(S.timeline, ts);
    if (S.timeline[i] === ts) S.series[i] = m.summary;
    else { S.timeline.splice(i, 0, ts); S.series.splice(i, 0, m.summary); }
  }
  let drop = 0;
  while (drop < S.timeline.length - 1 && S.timeline[drop] < m.oldest) drop += 1;
  if (drop) { S.timeline.splice(0, drop); S.series.splice(0, drop); }
  if (!S.latest || ts >= S.latest.ts) S.latest = data;
  if (S.viewTs === null) S.view = S.latest;
  if (S.trafficConn) {
    const c = data.conns.find((x) => x.id === S.trafficConn);
    const last = S.connSeries[S.connSeries.length - 1];
    if (c && (!last || last.ts < ts)) S.connSeries.push({ ts, bwIn: c.bwIn, bwOut: c.bwOut, in: c.in, out: c.out });
    while (S.connSeries.length && S.connSeries[0].ts < m.oldest) S.connSeries.shift();
  }
}

function registerTypes(types) {
  for (const t of types || []) { S.eventTypes.add(t.name); fmt.colorFor(t.name); }
}

function addEvent(e) {
  let text;
  try { text = typeof e.content === "string" ? e.content : JSON.stringify(e.content); } catch { text = String(e.content); }
  // A §3.1 event reads as the sentence the dashboard made of it (convert_events.py's "says").
  if (typeof e.says === "string") text = e.says;
  const row = { seq: e.seq, ts: e.ts, type: e.type, content: e.content, summary: text.length > 240 ? `${text.slice(0, 240)}…` : text };
  // A DHT query, as the dashboard read it (either shape of the event: convert_events.py's QUERY).
  if (e.query && Array.isArray(e.query.peers)) row.query = e.query;
  S.events.push(row);
  S.eventTypes.add(e.type);
  S.eventCounts.set(e.type, (S.eventCounts.get(e.type) || 0) + 1);
  if (S.events.length > MAX_EVENTS * 1.1) {
    for (const old of S.events.splice(0, S.events.length - MAX_EVENTS)) {
      S.eventCounts.set(old.type, S.eventCounts.get(old.type) - 1);
    }
  }
}

function bisectLeft(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid + 1; else hi = mid; }
  return lo;
}

// ------------------------------------------------------------------ moment

const isLive = () => S.viewTs === null;

async function showMoment(ts) {
  if (ts === null || (S.latest && ts >= S.latest.ts && ts === S.timeline[S.timeline.length - 1])) {
    S.viewTs = null;
    S.view = S.latest;
    schedule();
    return;
  }
  S.viewTs = ts;
  schedule();
  try {
    const data = await getJson(`/api/snapshot?ts=${ts}&form=page`); // without its streams
    if (S.viewTs === ts) { S.view = adoptSnapshot(data); schedule(); }
  } catch (err) {
    showMessage(`cannot show that moment: ${err.message}`);
  }
}

async function loadConnSeries(id) {
  S.connSeries = [];
  if (!id) { schedule(); return; }
  try {
    const points = await getJson(`/api/connection-series?id=${encodeURIComponent(id)}`);
    if (S.trafficConn === id) { S.connSeries = points; schedule(); }
  } catch (err) {
    showMessage(`cannot load that connection's traffic: ${err.message}`);
  }
}

// ------------------------------------------------------------------ rendering

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; render(); });
}

function render() {
  const shown = snapshotArrived;
  snapshotArrived = null;
  const began = performance.now();
  renderStatus();
  renderNode();
  renderTimebar();
  const headerDone = performance.now();
  nodes.renderNodes(S.tab === "nodes");
  if (S.tab === "connections") renderConnections();
  else if (S.tab === "streams") renderStreams();
  else if (S.tab === "traffic") renderTraffic();
  else if (S.tab === "dht") renderDht();
  else if (S.tab in extViews) renderExt(S.tab);
  else if (S.tab === "events") renderEvents();
  $("events-total").textContent = S.events.length;
  tellStreamsQuery();
  if (shown) {
    const tab = S.tab;
    tables.allSet().then(() => {
      void $(`tab-${tab}`).offsetHeight; // the layout, inside the measurement
      const now = performance.now();
      const timing = { view: tab, at: shown.arrived, ms: now - shown.arrived, parse: shown.handled - shown.arrived,
        wait: began - shown.handled, header: headerDone - began, draw: now - headerDone };
      // The Streams table's part of draw: its page fetched (or sent with the snapshot), its rows updated.
      if (tab === "streams" && streamsT?.lastRefresh) Object.assign(timing, streamsT.lastRefresh);
      if (streamsT) streamsT.lastRefresh = null;
      drawTimings.push(timing);
      if (drawTimings.length > KEEP_TIMINGS) drawTimings.splice(0, drawTimings.length - KEEP_TIMINGS);
    });
  }
}

// A command's HTTP answer carries the status as it was when the server answered;
// the feed may already have delivered a newer one (e.g. "connected" overtaking the
// answer to Connect). Keep the newer: the connection state's "since" orders them.
function adoptAnswerStatus(st) {
  const cur = S.status;
  if (!cur || st.since > cur.since || (st.since === cur.since && st.connection === cur.connection)) {
    S.status = st;
  }
}

let overLimitShown = 0;
function renderStatus() {
  const st = S.status;
  if (!st) return;
  const recording = st.mode === "recording";
  const badge = $("mode-badge");
  badge.textContent = recording ? "recording" : "live";
  badge.className = `badge${recording ? " recording" : ""}`;
  const state = $("conn-state");
  state.hidden = recording; // a recording is not connected to anything
  state.textContent = st.connection;
  state.className = `state state-${st.connection}`;
  state.title = st.error || `${st.connection} since ${fmt.clock(st.since)}`;
  $("server-url").textContent = st.url;
  $("server-url").hidden = recording;
  $("connect-url").placeholder = st.url || "ws://127.0.0.1:8845/introspect";
  const rec = $("recording-name");
  rec.hidden = !recording;
  if (recording && st.recording) {
    const r = st.recording;
    rec.textContent = `${r.name} · ${r.states} snapshots · ${r.events} events` +
      (r.checksumFailures ? ` · ${r.checksumFailures} damaged records skipped` : "") + (r.truncated ? " · truncated" : "") +
      (r.overLimit ? ` · ${r.overLimit} skipped (over the expansion limits)` : "");
  }
  // Snapshots skipped for holding more than the limits allow: say so once per new count.
  const over = st.overLimit;
  if (over && over.count && over.count !== overLimitShown) showMessage(over.reason, "error", 0, "limit");
  overLimitShown = over ? over.count : 0;
  const pause = $("pause-btn");
  pause.disabled = recording;
  pause.textContent = st.paused ? "Resume" : "Pause";
  $("feed-state").textContent = recording ? "" : st.paused ? "paused" : "";
  if (!recording && st.connection !== "connected" && st.error) {
    showMessage(`${st.connection}: ${st.error}`, "error", 0, "link");
  } else if (currentMessageKey === "link") {
    hideMessage();
  }
}

// The header's counts of a snapshot, counted once (the page draws again at every event,
// 20 a second, and counting 5,000 connections each time kept the page busy).
const counted = new WeakMap();
function headerCounts(v) {
  let counts = counted.get(v);
  if (!counts) {
    let active = 0;
    let streams = 0;
    for (const c of v.conns) { if (c.status === "ACTIVE") active += 1; streams += c.ns; }
    const dht = v.dht ? v.dht.buckets.reduce((n, b) => n + b.peers.length, 0) : null;
    counts = { active, streams, dht };
    counted.set(v, counts);
  }
  return counts;
}

/** Set el's text, only if it changed (the same text set again still costs a layout). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function renderNode() {
  const rt = S.runtime;
  $("peer-id").textContent = rt?.peerId || "—";
  $("peer-id").title = rt?.peerId || "";
  $("runtime-impl").textContent = rt?.implementation || "—";
  $("runtime-version").textContent = rt?.version || "—";
  $("runtime-platform").textContent = rt?.platform || "—";
  const v = S.view;
  if (!v) return;
  const { active, streams, dht } = headerCounts(v);
  setText($("num-conns"), v.conns.length === active ? `${active}` : `${active} / ${v.conns.length}`);
  $("num-conns").title = `${active} active of ${v.conns.length} shown`;
  setText($("num-streams"), String(streams));
  setText($("num-bw-in"), fmt.rate(v.traffic.bwIn));
  setText($("num-bw-out"), fmt.rate(v.traffic.bwOut));
  setText($("num-dht"), dht === null ? "—" : String(dht));
  renderNodeInfo(v);
  // Pubsub and Resources have a tab only for a node that runs them (or while shown).
  ext.showTab("pubsub", Boolean(v.pubsub) || S.tab === "pubsub");
  ext.showTab("resources", Boolean(v.resources) || S.tab === "resources");
}

function renderTimebar() {
  const slider = $("timeline");
  const n = S.timeline.length;
  renderSave(S.status, n);
  slider.max = Math.max(0, n - 1);
  slider.disabled = n < 2;
  if (isLive()) slider.value = slider.max;
  else slider.value = Math.min(n - 1, Math.max(0, bisectLeft(S.timeline, S.viewTs)));
  $("live-btn").disabled = isLive();
  const label = $("view-time");
  const v = S.view;
  label.parentElement.classList.toggle("past", !isLive());
  if (!v) { label.textContent = "—"; return; }
  const behind = S.latest ? S.latest.ts - v.ts : 0;
  const newest = S.status?.mode === "recording" ? "newest" : S.status?.paused ? "paused" : "live";
  label.textContent = isLive() ? `${newest} · ${fmt.clock(v.ts)}` : `${fmt.clock(v.ts)} (${fmt.duration(behind)} before the newest)`;
  const tsEl = $("snapshot-ts");
  tsEl.dataset.ts = String(v.ts);
  tsEl.textContent = fmt.dateTime(v.ts);
  $("timeline-range").textContent = n ? `${n} snapshots kept, ${fmt.duration(S.timeline[n - 1] - S.timeline[0])}` : "";
}

// --- connections

let connT = null;
let connStreamsT = null;
function ensureConnectionTables() {
  if (connT) return;
  connT = tables.connectionsTable($("connections-table"), {
    onSelect: (id) => selectConnection(id),
    onCopied,
    placeholder: () => (S.view ? "no connections in this snapshot" : WAITING),
  });
  connT.filterBy(connectionFilter);
  connStreamsT = tables.streamsTable($("conn-streams-table"), {
    withPeer: false, onCopied, height: "32vh",
    query: () => (S.view && S.selectedConn ? { ts: S.view.ts, conn: S.selectedConn } : null),
  });
}

/** The connections' row test for the filter inputs as they are now (null: no filter). */
function connectionFilter() {
  const status = $("filter-status").value;
  const peer = $("filter-peer").value.trim().toLowerCase();
  const proto = $("filter-proto").value.trim().toLowerCase();
  if (!status && !peer && !proto) return null;
  return (d) => (!status || d.status === status) && (!peer || d.peer.toLowerCase().includes(peer)) &&
    (!proto || d.protos.toLowerCase().includes(proto));
}

// The Connections table's row of a connection whose age does not move with the snapshot's
// time (closed with a close time, or of no open time): kept while the connection object
// lives, so that an unchanged closed connection (most of a busy node's rows: a closed one
// stays two minutes) is the same row object from one snapshot to the next, neither built
// again nor compared cell by cell (tables.js updateInPlace).
const fixedRows = new WeakMap();
function connectionRows(v) {
  const ts = v.ts;
  return v.conns.map((c) => {
    let row = fixedRows.get(c);
    if (row !== undefined) return row;
    row = {
      id: c.id, peer: c.peer, status: c.status, src: c.src, dst: c.dst,
      transport: c.transport || "—", mux: c.mux || "—", sec: c.sec || "—", role: c.role,
      age: ageAt(c.status, c.open, c.close, ts),
      lat: c.lat, in: c.in, out: c.out, bwIn: c.bwIn, bwOut: c.bwOut,
      nstreams: c.ns, protos: joined(c.protoList),
      peerInfo: c.peerInfo || null, agent: c.peerInfo ? c.peerInfo.agent || "(no agent version)" : "",
    };
    if (!c.open || (c.status === "CLOSED" && c.close)) fixedRows.set(c, row);
    return row;
  });
}

// A list of protocols as one text (the protocol filter's), made once per list.
const joinedLists = new WeakMap();
function joined(list) {
  let text = joinedLists.get(list);
  if (text === undefined) { text = list.join(" "); joinedLists.set(list, text); }
  return text;
}

// How long a connection or stream has lived at snapshot time ts (ms): until it closed,
// if CLOSED with a close time; 0 when its open time is unknown (0).
function ageAt(status, open, close, ts) {
  return open ? (status === "CLOSED" && close ? close : ts) - open : 0;
}

function renderConnections() {
  ensureConnectionTables();
  const v = S.view;
  if (!v) return;
  const key = [v, S.selectedConn];
  if (connT.lastKey && connT.lastKey[0] === key[0] && connT.lastKey[1] === key[1]) { renderConnDetail(); return; }
  connT.lastKey = key;
  connT.selected = S.selectedConn;
  connT.set(connectionRows(v)).then(updateConnCount);
  renderConnDetail();
}

function renderConnDetail() {
  const v = S.view;
  const detail = $("conn-detail");
  detail.hidden = !S.selectedConn;
  if (S.selectedConn) {
    const last = connStreamsT.lastKey;
    if (last && last[0] === v && last[1] === S.selectedConn) return;
    connStreamsT.lastKey = [v, S.selectedConn];
    const c = v.conns.find((x) => x.id === S.selectedConn);
    $("detail-peer").textContent = c ? `${c.peer} (${c.status})` : "a connection not in this snapshot";
    $("detail-peerinfo").replaceChildren(c ? peerInfoBlock(c.peerInfo) : "");
    if (last && last[1] === S.selectedConn) connStreamsT.refresh(); // a new moment: the page shown
    else connStreamsT.reload(); // another connection: its first page
  }
}

function updateConnCount() {
  const v = S.view;
  if (connT && v) $("conn-count").textContent = `${connT.table.getDataCount("active")} of ${v.conns.length} connections`;
}

function selectConnection(id) {
  S.selectedConn = S.selectedConn === id ? null : id;
  if (S.selectedConn && S.trafficConn !== id) {
    S.trafficConn = id;
    loadConnSeries(id);
  }
  schedule();
  if (S.selectedConn) requestAnimationFrame(() => connStreamsT.redraw());
}

// --- streams

let streamsT = null;
let streamCounts = null; // the last page's {last_row, total}
function renderStreams() {
  if (!streamsT) {
    streamsT = tables.streamsTable($("streams-table"), {
      withPeer: true, onCopied,
      query: () => (S.view ? { ts: S.view.ts, find: $("filter-stream-proto").value.trim(),
        status: $("filter-stream-status").value } : null),
      onPage: (answer) => { streamCounts = answer; updateStreamCount(); },
      onQuery: (text) => { streamsT.shownQuery = text; tellStreamsQuery(); },
    });
  }
  const v = S.view;
  if (!v || streamsT.lastView === v) return;
  streamsT.lastView = v;
  streamsT.refresh();
}

// The page of streams the dashboard is told this page shows (app.py's feed: it sends that
// page's answer with every snapshot), while the Streams view follows live; null: not told
// yet on this feed.
let streamsAsked = null;
function tellStreamsQuery() {
  const shown = S.tab === "streams" && isLive() && streamsT?.shownQuery;
  const text = shown ? `streams?${streamsT.shownQuery}` : "streams";
  if (text === streamsAsked) return;
  streamsAsked = text;
  feed.send(text);
}

function updateStreamCount() {
  if (streamsT && streamCounts) $("stream-count").textContent = `${streamCounts.last_row} of ${streamCounts.total} streams`;
}

// --- traffic

// Views redraw only when what they show changed (events arrive far more often than snapshots).
const lastKeys = new Map();
function changed(view, key) {
  if (lastKeys.get(view) === key) return false;
  lastKeys.set(view, key);
  return true;
}
function chartKey() {
  const last = S.connSeries[S.connSeries.length - 1];
  return [S.hellos, S.view?.ts, S.timeline.length, S.timeline[S.timeline.length - 1], S.viewTs,
    S.trafficConn, S.connSeries.length, last?.ts].join("|");
}

let nodeChart = null;
let connChart = null;
/** Show the chart #chart-<name>, or the line #<name>-chart-hint in its place. */
function showChart(chart, name, shown) {
  const box = $(`chart-${name}`);
  $(`${name}-chart-hint`).hidden = shown;
  if (box.hidden === shown) {
    box.hidden = !shown;
    if (shown) requestAnimationFrame(() => chart.resize());
  }
}
function visibleSeries() {
  if (isLive()) return S.series;
  return S.series.slice(0, bisectLeft(S.timeline, S.viewTs + 1));
}

function renderTraffic() {
  if (!nodeChart) {
    nodeChart = lineChart($("chart-node"), [{ label: "in", color: "#1f9d6b" }, { label: "out", color: "#d9772b" }], fmt.rate);
    connChart = lineChart($("chart-conn"), [{ label: "in", color: "#1f9d6b" }, { label: "out", color: "#d9772b" }], fmt.rate);
  }
  nodeChart.resize();
  connChart.resize();
  if (!changed("traffic", `${chartKey()}|${Boolean(S.trafficConn)}|${S.series.length > 0}`)) return;
  const pts = visibleSeries();
  nodeChart.set(pts.map((p) => p.ts / 1000), pts.map((p) => p.bwIn), pts.map((p) => p.bwOut));
  const limit = isLive() ? Infinity : S.viewTs;
  const cpts = S.connSeries.filter((p) => p.ts <= limit);
  connChart.set(cpts.map((p) => p.ts / 1000), cpts.map((p) => p.bwIn), cpts.map((p) => p.bwOut));
  // No empty chart boxes: before the first snapshot, and until a connection is chosen,
  // a line says what will come there.
  showChart(nodeChart, "node", S.series.length > 0);
  showChart(connChart, "conn", Boolean(S.trafficConn));
  // The connection chooser. A select of thousands of options costs the browser a layout
  // of every one of them at any change (an option added or removed, the value set: 120 to
  // 280 ms at 5,000 connections, each snapshot, measured): a big list is brought up to date
  // when the user is about to use it (focus, pointer or key on it: chooserInUse), when the
  // moment shown changes by hand, or when it lacks the chosen connection; a small one
  // (CHOOSER_LIVE_OPTIONS) at every snapshot.
  const select = $("traffic-conn");
  const v = S.view;
  const big = (v ? v.conns.length : 0) > CHOOSER_LIVE_OPTIONS;
  if (!big || chooserOptions.size <= 1 || chooserMoment !== S.viewTs
      || (S.trafficConn && !chooserOptions.has(S.trafficConn))) fillChooser();
  else if (S.trafficConn) { // the one option shown while the list is closed: of this snapshot
    const kept = chooserOptions.get(S.trafficConn);
    const text = chooserText(v.conns.find((c) => c.id === S.trafficConn));
    if (kept.text !== text) { kept.option.text = text; kept.text = text; }
  }
  if (select.value !== S.trafficConn) select.value = S.trafficConn;
}

/** The chooser's text for connection c (undefined: the chosen one, not in the snapshot). */
function chooserText(c) {
  return c ? `${fmt.shortPeer(c.peer)} · ${c.status} · ${c.mux || "?"}` : "(chosen connection, not in this snapshot)";
}

const CHOOSER_LIVE_OPTIONS = 500;
let chooserMoment = null; // S.viewTs when the chooser was last filled
/** The chooser's options: connections of the moment shown, plus the chosen one. */
function fillChooser() {
  const select = $("traffic-conn");
  const v = S.view;
  const options = [["", "choose a connection"]];
  // One option a value: setOptions keeps one element a value, and a connection of id ""
  // (the prompt's) or an id given twice would take another's (the prompt read as a peer).
  const given = new Set([""]);
  let found = false;
  for (const c of v ? v.conns : []) {
    if (given.has(c.id)) continue;
    given.add(c.id);
    options.push([c.id, chooserText(c)]);
    if (c.id === S.trafficConn) found = true;
  }
  if (S.trafficConn && !found) options.push([S.trafficConn, chooserText(undefined)]);
  setOptions(select, options);
  chooserMoment = S.viewTs;
  if (select.value !== S.trafficConn) select.value = S.trafficConn;
}
/** The user is about to choose: show the connections of the moment shown. */
function chooserInUse() {
  fillChooser();
}

// The chooser's options by value: {option, text}. Rebuilding 5,000 options at every
// snapshot (and the browser measuring each again to size the list) took most of the
// Traffic view's redraw: an option whose connection is still there is kept, its text set
// only when it changed, and moved only when its place changed (a connection that
// vanished from the node moves from its place to the end, with the closed ones).
const chooserOptions = new Map();
/** Make select's options [value, text] of `options`, in that order, keeping those it has. */
function setOptions(select, options) {
  const wanted = new Set(options.map(([value]) => value));
  for (const [value, kept] of chooserOptions) {
    if (!wanted.has(value)) { kept.option.remove(); chooserOptions.delete(value); }
  }
  let at = select.firstElementChild;
  for (const [value, text] of options) {
    let kept = chooserOptions.get(value);
    if (!kept) {
      kept = { option: new Option(text, value), text };
      chooserOptions.set(value, kept);
    } else if (kept.text !== text) {
      kept.option.text = text;
      kept.text = text;
    }
    const option = kept.option;
    // An option in the way that is wanted further on, just before this one: it moved
    // later; take it out (it goes back in at its turn) rather than move all after it.
    while (at && at !== option && at.nextElementSibling === option && wanted.has(at.value)) {
      const next = at.nextElementSibling;
      at.remove();
      at = next;
    }
    if (option === at) at = at.nextElementSibling;
    else select.insertBefore(option, at);
  }
  while (at) { const next = at.nextElementSibling; at.remove(); at = next; } // none wanted from here
}

// --- protocols, pubsub, resources (views_ext.js)

const extViews = {
  peers: peersView({ onCopied }),
  protocols: ext.protocolsView(),
  pubsub: ext.pubsubView({ onCopied }),
  resources: ext.resourcesView(),
};
function renderExt(name) {
  extViews[name].render({
    v: S.view, points: visibleSeries(), chartKey: chartKey(), waiting: WAITING,
    events: S.events, eventsVersion: S.eventsVersion, until: isLive() ? null : S.viewTs,
  });
}

// --- DHT

// The DHT queries of the events the page holds, up to the moment shown, by peer id:
// {in, out, last: {ts, query}}.
function dhtQueriesByPeer() {
  const moment = isLive() ? null : S.viewTs;
  const byPeer = new Map();
  for (const e of S.events) {
    const q = e.query;
    if (!q || (moment !== null && e.ts > moment)) continue;
    for (const peer of q.peers) {
      let seen = byPeer.get(peer);
      if (!seen) { seen = { in: 0, out: 0, last: null }; byPeer.set(peer, seen); }
      if (q.dir === "INBOUND") seen.in += 1; else seen.out += 1;
      if (!seen.last || e.ts >= seen.last.ts) seen.last = { ts: e.ts, query: q };
    }
  }
  return byPeer;
}

function lastQueryText(last) {
  if (!last) return "";
  const q = last.query;
  const took = typeof q.ms === "number" ? ` · ${fmt.duration(q.ms)}` : "";
  return `${q.dir === "INBOUND" ? "in" : "out"} ${q.message || "?"} ${q.result || "?"}${took} · ${fmt.clock(last.ts)}`;
}

const DHT_ROWS_EVERY_MS = 500;
let dhtT = null;
let dhtChart = null;
let dhtRowsAt = 0;
let dhtRowsTimer = null;
function renderDht() {
  if (!dhtT) {
    dhtT = tables.dhtTable($("dht-table"), { onCopied });
    dhtChart = lineChart($("chart-dht"), [
      { label: "in ok", color: "#1f9d6b" }, { label: "in error", color: "#c0392b" }, { label: "in timeout", color: "#c98a00" },
      { label: "out ok", color: "#2f6fdb", dash: [6, 3] }, { label: "out error", color: "#8e44ad", dash: [6, 3] },
      { label: "out timeout", color: "#7f8c8d", dash: [6, 3] },
    ], (x) => String(Math.round(x)));
  }
  dhtChart.resize();
  const viewChanged = changed("dht", chartKey());
  // Events arrive far more often than snapshots: their counts refresh at most every DHT_ROWS_EVERY_MS.
  const eventsChanged = changed("dht-events", S.eventsVersion);
  if (!viewChanged && !eventsChanged) return;
  if (!viewChanged) {
    const wait = DHT_ROWS_EVERY_MS - (performance.now() - dhtRowsAt);
    if (wait > 0) {
      lastKeys.delete("dht-events");
      if (!dhtRowsTimer) dhtRowsTimer = setTimeout(() => { dhtRowsTimer = null; schedule(); }, wait);
      return;
    }
  }
  dhtRowsAt = performance.now();
  const v = S.view;
  const dht = v?.dht;
  if (!dht) {
    $("dht-summary").textContent = v ? "no DHT in this snapshot" : WAITING;
    dhtT.set([]);
  } else {
    const byPeer = dhtQueriesByPeer();
    let queries = 0;
    for (const e of S.events) if (e.query && (isLive() || e.ts <= S.viewTs)) queries += 1;
    const sizes = dht.buckets.map((b) => `${b.cpl}:${b.peers.length}`).join("  ");
    const p = dht.params;
    $("dht-summary").textContent = `${dht.protocol || "DHT"} ${dht.enabled ? "enabled" : "disabled"} · k=${p.k} α=${p.alpha} ` +
      `β=${p.beta} disjoint paths=${p.disjointPaths} · started ${fmt.clock(dht.start)} · ` +
      `${dht.buckets.length} buckets (cpl:peers ${sizes}) · queries in ${dht.qin.success}/${dht.qin.error}/${dht.qin.timeout}, ` +
      `out ${dht.qout.success}/${dht.qout.error}/${dht.qout.timeout} (ok/error/timeout) · ${queries} query events kept`;
    const rows = [];
    for (const b of dht.buckets) {
      for (const peer of b.peers) {
        const seen = byPeer.get(peer.peer);
        rows.push({ key: `${b.cpl}:${peer.peer}`, cpl: b.cpl, peer: peer.peer, status: peer.status, age: peer.age,
          qin: seen ? seen.in : 0, qout: seen ? seen.out : 0, last: lastQueryText(seen?.last) });
      }
    }
    dhtT.set(rows);
  }
  if (!viewChanged) return;
  showChart(dhtChart, "dht", Boolean(v));
  const pts = visibleSeries();
  dhtChart.set(pts.map((q) => q.ts / 1000),
    pts.map((q) => q.qin.success), pts.map((q) => q.qin.error), pts.map((q) => q.qin.timeout),
    pts.map((q) => q.qout.success), pts.map((q) => q.qout.error), pts.map((q) => q.qout.timeout));
}

// --- events

let eventsT = null;
const EVENTS_EVERY_MS = 400;
let eventsSetAt = 0;
let eventsTimer = null;
let eventsFilterKey = "";
/** The events' row test for the type chips, the moment and the time window now (null: none). */
function eventFilter() {
  const types = S.typeFilter.size ? new Set(S.typeFilter) : null;
  const moment = isLive() ? null : S.viewTs;
  const windowMs = Number($("filter-event-time").value);
  const end = moment ?? Math.max(S.latest?.ts || 0, S.events.length ? S.events[S.events.length - 1].ts : 0);
  const from = windowMs ? end - windowMs : null;
  if (!types && moment === null && from === null) return null;
  return (d) => (!types || types.has(d.type)) && (moment === null || d.ts <= moment) && (from === null || d.ts >= from);
}

function renderEvents() {
  if (!eventsT) {
    eventsT = tables.eventsTable($("events-table"));
    eventsT.filterBy(eventFilter);
  }
  renderChips();
  const windowMs = $("filter-event-time").value;
  const filterKey = `${S.viewTs}|${[...S.typeFilter].join(",")}|${windowMs}|${windowMs ? S.latest?.ts : ""}`;
  if (S.eventsShown !== S.eventsVersion) {
    // Busy nodes send many events: give the table new rows at most every EVENTS_EVERY_MS.
    const wait = EVENTS_EVERY_MS - (performance.now() - eventsSetAt);
    if (wait > 0) {
      if (!eventsTimer) eventsTimer = setTimeout(() => { eventsTimer = null; schedule(); }, wait);
      return;
    }
    eventsSetAt = performance.now();
    S.eventsShown = S.eventsVersion;
    eventsFilterKey = filterKey;
    eventsT.set(S.events.slice()).then(updateEventCount);
  } else if (filterKey !== eventsFilterKey) {
    eventsFilterKey = filterKey;
    eventsT.refilter().then(updateEventCount);
  }
}

function updateEventCount() {
  $("event-count").textContent = `${eventsT.table.getDataCount("active")} of ${S.events.length} events shown`;
}

function renderChips() {
  const box = $("event-chips");
  const names = [...S.eventTypes].sort();
  const key = names.map((n) => `${n}:${S.eventCounts.get(n) || 0}:${S.typeFilter.has(n)}`).join("|") + `|${S.typeFilter.size}`;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...names.map((name) => {
    const chip = document.createElement("button");
    chip.type = "button";
    const on = S.typeFilter.has(name);
    chip.className = `chip${on ? " on" : S.typeFilter.size ? " off" : ""}`;
    chip.dataset.type = name;
    chip.title = on ? `stop filtering on ${name}` : `show ${name} events`;
    chip.append(tables.typeChip(name), dom.el("span", { className: "n" }, S.eventCounts.get(name) || 0));
    chip.addEventListener("click", () => {
      if (S.typeFilter.has(name)) S.typeFilter.delete(name); else S.typeFilter.add(name);
      schedule();
    });
    return chip;
  }));
}

// ------------------------------------------------------------------ messages bar

let currentMessageKey = null;
let messageTimer = null;
function showMessage(text, kind = "error", timeoutMs = 8000, key = "msg") {
  const el = $("message");
  el.textContent = text;
  el.className = `message${kind === "info" ? " info" : ""}`;
  el.hidden = false;
  currentMessageKey = key;
  clearTimeout(messageTimer);
  if (timeoutMs) messageTimer = setTimeout(hideMessage, timeoutMs);
}
function hideMessage() {
  $("message").hidden = true;
  currentMessageKey = null;
}

function onCopied(ok, text) {
  showMessage(ok ? `copied ${text}` : "the browser refused to copy", ok ? "info" : "error", 2500);
}

// ------------------------------------------------------------------ controls

function setupControls() {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      S.tab = button.dataset.tab;
      for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b === button);
      for (const section of document.querySelectorAll(".tab")) section.classList.toggle("active", section.id === `tab-${S.tab}`);
      render();
      for (const t of [connT, connStreamsT, streamsT, dhtT, eventsT, ...Object.values(extViews)]) if (t) t.redraw();
    });
  }
  $("pause-btn").addEventListener("click", async () => {
    const resume = S.status?.paused;
    try {
      const answer = await api(resume ? "/api/resume" : "/api/pause");
      adoptAnswerStatus(answer.status);
      schedule();
    } catch (err) { showMessage(err.message); }
  });
  $("live-btn").addEventListener("click", () => showMoment(null));
  $("timeline").addEventListener("input", (e) => {
    const i = Number(e.target.value);
    showMoment(i >= S.timeline.length - 1 ? null : S.timeline[i]);
  });
  $("connect-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const url = $("connect-url").value.trim() || S.status?.url || "";
    try {
      const answer = await api("/api/connect", { url });
      adoptAnswerStatus(answer.status);
      $("connect-url").value = "";
      showMessage(`connecting to ${answer.status.url}`, "info", 3000);
      schedule();
    } catch (err) { showMessage(err.message); }
  });
  $("file-input").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    showMessage(`loading ${file.name} (${fmt.bytes(file.size)})…`, "info", 0);
    try {
      const answer = await api("/api/recording", file, {
        "X-File-Name": encodeURIComponent(file.name), "Content-Type": "application/octet-stream",
      });
      const r = answer.status.recording;
      showMessage(`showing ${r.name}: ${r.states} snapshots, ${r.events} events`, "info", 4000);
    } catch (err) { showMessage(`cannot show ${file.name}: ${err.message}`); }
  });
  $("copy-peer").addEventListener("click", () => {
    if (S.runtime?.peerId) fmt.copyText(S.runtime.peerId).then((ok) => onCopied(ok, S.runtime.peerId));
  });
  $("detail-close").addEventListener("click", () => { S.selectedConn = null; schedule(); });
  for (const type of ["focus", "pointerdown", "keydown"]) $("traffic-conn").addEventListener(type, chooserInUse);
  $("traffic-conn").addEventListener("change", (e) => {
    S.trafficConn = e.target.value;
    loadConnSeries(S.trafficConn);
  });
  for (const id of ["filter-status", "filter-peer", "filter-proto"]) {
    $(id).addEventListener("input", () => connT && connT.refilter().then(updateConnCount));
  }
  for (const id of ["filter-stream-proto", "filter-stream-status"]) {
    $(id).addEventListener("input", () => streamsT && streamsT.reload());
  }
  $("filter-event-time").addEventListener("input", () => schedule());
  window.addEventListener("resize", () => schedule());
}

setupControls();
nodes.initNodes({ showMessage, adoptStatus: adoptAnswerStatus, schedule });
const feed = openFeed(onMessage, (up) => {
  S.linkUp = up;
  if (!up) showMessage("lost the link to the dashboard; retrying…", "error", 0, "dash");
  else if (currentMessageKey === "dash") hideMessage();
});
schedule();

// For debugging from the console (and nothing else).
window.dashboardState = S;
window.dashboardNodes = { timings: nodes.timings, redraw: nodes.redraw };
window.dashboardTimings = drawTimings;
// For the benchmark: the view shown drawn again as if the snapshot shown had just come
// (a copy of it, so that no view keeps what it drew); resolves to the time taken, ms.
window.dashboardRedraw = () => {
  const v = S.view;
  if (!v) return Promise.resolve(null);
  const copy = { ...v };
  const began = performance.now();
  if (S.latest === v) S.latest = copy;
  S.view = copy;
  render();
  return tables.allSet().then(() => {
    void $(`tab-${S.tab}`).offsetHeight;
    return performance.now() - began;
  });
};
