// The Protocols, Pubsub and Resources views (PROTOCOL.md §3.1 data; shapes in
// convert_ext.py). Each view draws the snapshot shown (ctx.v) and, for charts, the
// chart points up to it (ctx.points); an absent subsystem (null) is said in words:
// the node does not run it, which is not the same as having nothing in it.

import * as fmt from "./format.js";
import * as dom from "./dom.js";
import { lineChart } from "./charts.js";
import * as tx from "./tables_ext.js";

const $ = (id) => document.getElementById(id);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
/** Protocols drawn in the bandwidth chart (the busiest over the points shown). */
const CHART_PROTOCOLS = 8;
const LEGEND_CHARS = 48;
const COLORS = ["#2f6fdb", "#c0392b", "#1f9d6b", "#8e44ad", "#d9772b", "#16a085", "#b7950b", "#2c3e50"];

/** Show or hide the tab button of a view (and its section's content). */
export function showTab(name, shown) {
  const button = document.querySelector(`.tabs button[data-tab="${name}"]`);
  if (button) button.hidden = !shown;
}

// --- protocols

export function protocolsView() {
  let table = null;
  let chart = null;
  let chartNames = "";
  let lastV = null;
  let lastChart = "";
  function render(ctx) {
    table ??= tx.protocolsTable($("protocols-table"));
    const v = ctx.v;
    if (v !== lastV) {
      lastV = v;
      const protos = v ? v.protocols || [] : [];
      const active = protos.reduce((n, p) => n + p.active, 0);
      $("protocols-summary").textContent = !v ? ctx.waiting : protos.length
        ? `${plural(protos.length, "protocol")} · ${plural(active, "active stream")} · ` +
          `${fmt.rate(protos.reduce((n, p) => n + p.bwIn, 0))} in, ${fmt.rate(protos.reduce((n, p) => n + p.bwOut, 0))} out now`
        : "This snapshot reports no per-protocol traffic (the node does not report it, or it was recorded before it did).";
      table.set(protos.map((p, i) => ({ ...p, key: i, total: p.in + p.out })));
    }
    if (chart) chart.resize();
    if (ctx.chartKey === lastChart) return;
    lastChart = ctx.chartKey;
    const totals = new Map();
    for (const p of ctx.points) {
      for (const [name, [bwIn, bwOut]] of Object.entries(p.protos || {})) totals.set(name, (totals.get(name) || 0) + bwIn + bwOut);
    }
    const names = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a)).slice(0, CHART_PROTOCOLS);
    const namesKey = JSON.stringify(names);
    if (namesKey !== chartNames) {
      chartNames = namesKey;
      if (chart) chart.destroy();
      $("chart-protocols").replaceChildren();
      chart = names.length ? lineChart($("chart-protocols"), names.map((n, i) => ({
        label: n === "" ? "(not negotiated)" : n.length > LEGEND_CHARS ? `${n.slice(0, LEGEND_CHARS)}…` : n,
        color: COLORS[i % COLORS.length],
      })), fmt.rate) : null;
    }
    $("protocols-chart-hint").hidden = Boolean(chart);
    $("chart-protocols").hidden = !chart;
    if (!chart) return;
    const pts = ctx.points;
    chart.set(pts.map((p) => p.ts / 1000), ...names.map((n) => pts.map((p) => {
      const bw = (p.protos || {})[n];
      return bw ? bw[0] + bw[1] : null;
    })));
    requestAnimationFrame(() => chart && chart.resize());
  }
  return { render, redraw: () => table && table.redraw() };
}

// --- pubsub

export function pubsubView({ onCopied }) {
  let topics = null;
  let peers = null;
  let lastKey = null;
  function render(ctx) {
    topics ??= tx.topicsTable($("pubsub-topics-table"));
    peers ??= tx.pubsubPeersTable($("pubsub-peers-table"), { onCopied });
    const v = ctx.v;
    const viewChanged = !lastKey || lastKey[0] !== v;
    if (!viewChanged && lastKey[1] === ctx.eventsVersion) return;
    lastKey = [v, ctx.eventsVersion];
    const ps = v ? v.pubsub : null;
    $("pubsub-body").hidden = !ps;
    if (!ps) {
      $("pubsub-summary").textContent = v ? "This node does not run pubsub: no floodsub or gossipsub router in this snapshot." : ctx.waiting;
      return;
    }
    const subscribed = ps.topics.filter((t) => t.subscribed).length;
    let grafts = 0;
    let prunes = 0;
    for (const e of ctx.events) {
      if (ctx.until !== null && e.ts > ctx.until) continue;
      if (e.type === "PubsubGraft") grafts += 1;
      else if (e.type === "PubsubPrune") prunes += 1;
    }
    $("pubsub-summary").replaceChildren("router ", dom.el("code", {}, ps.router || "(unnamed)"),
      ` · ${plural(ps.topics.length, "topic")} (${subscribed} subscribed) · ${plural(ps.peers.length, "peer")} · ` +
      `${plural(grafts, "graft")} and ${plural(prunes, "prune")} among the events kept (see Events)`);
    if (!viewChanged) return;
    topics.set(ps.topics.map((t, i) => ({ ...t, key: i })));
    peers.set(ps.peers.map((p, i) => ({ key: i, peer: p.peer, protocol: p.protocol, score: p.score,
      topics: p.topics.join(" "), topicList: p.topics })));
  }
  return { render, redraw: () => { if (topics) topics.redraw(); if (peers) peers.redraw(); } };
}

// --- resources

export function resourcesView() {
  let table = null;
  let lastV = null;
  function render(ctx) {
    table ??= tx.scopesTable($("resources-table"));
    const v = ctx.v;
    if (v === lastV) return;
    lastV = v;
    const rm = v ? v.resources : null;
    $("resources-body").hidden = !rm;
    if (!rm) {
      $("resources-summary").textContent = v ? "This node's resource manager is off: it reports no resource usage or limits." : ctx.waiting;
      return;
    }
    $("resources-summary").textContent = `${plural(rm.scopes.length, "scope")} · ${plural(rm.blocked, "refused reservation")} ` +
      "since the introspector started · a limit of 0 means no limit";
    table.set(rm.scopes.map((s, i) => ({ ...s, key: i, connsUsed: s.usage.connsTotal, streamsUsed: s.usage.streamsTotal,
      memoryUsed: s.usage.memory, fdsUsed: s.usage.fds })));
  }
  return { render, redraw: () => table && table.redraw() };
}
