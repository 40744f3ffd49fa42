// The Nodes view: every introspection server the dashboard follows (dashboard/nodes.py).
//
// The dashboard sends the whole list ({"t": "nodes"}, at most once a second, and
// in every hello); this module keeps the newest and draws it as a plain table,
// one row per node, updated in place: a cell's text is set only when it changed,
// a row's sparkline redrawn only when a point came. A click on a row shows that
// node in every other view (POST /api/nodes/focus). Every string is text (dom.js).

import * as fmt from "./format.js";
import * as dom from "./dom.js";
import { api } from "./feed.js";

const $ = (id) => document.getElementById(id);
const SPARK_W = 120;
const SPARK_H = 26;
const KEEP_TIMINGS = 200;
const COLUMNS = ["status", "peer", "impl", "url", "conns", "streams", "in", "out"];

const N = { data: null, version: 0, drawn: -1, order: "" };
const rows = new Map(); // node id -> {tr, cells: {name: el}, shown: {name: text}, spark, sparkKey}
let ui = { showMessage: () => {}, adoptStatus: () => {}, schedule: () => {} };

/** Redraw times of the view (ms: script, style and layout), newest last, for the benchmark. */
export const timings = [];

/** Take a NODES object (a "nodes" message's, or a hello's; null: no Nodes view). */
export function setNodes(data) {
  N.data = data || null;
  N.version += 1;
}

/** Bind the view's controls; `showMessage(text, kind, ms)`, `adoptStatus(status)`, `schedule()`. */
export function initNodes(callbacks) {
  ui = { ...ui, ...callbacks };
  $("node-add-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const url = $("node-add-url").value.trim();
    if (!url) return;
    try {
      const answer = await api("/api/nodes/add", { url });
      $("node-add-url").value = "";
      setNodes(answer.nodes);
      ui.schedule();
    } catch (err) { ui.showMessage(err.message); }
  });
  $("nodes-body").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (!tr || !tr.dataset.id) return;
    if (e.target.closest("button.remove")) removeNode(tr.dataset.id);
    else focusNode(tr.dataset.id);
  });
}

async function focusNode(id) {
  const node = N.data?.nodes.find((n) => n.id === id);
  try {
    const answer = await api("/api/nodes/focus", { id });
    ui.adoptStatus(answer.status);
    if (N.data) { N.data = { ...N.data, focus: id }; N.version += 1; }
    ui.showMessage(`showing ${node?.peerId || node?.url || id} in every view`, "info", 3000);
    ui.schedule();
  } catch (err) { ui.showMessage(err.message); }
}

async function removeNode(id) {
  try {
    const answer = await api("/api/nodes/remove", { id });
    setNodes(answer.nodes);
    ui.schedule();
  } catch (err) { ui.showMessage(err.message); }
}

/**
 * Draw the view if it is `visible` and the data changed (or `force`); `full`: rebuild
 * every row from nothing. Returns the time it took (ms), or null if nothing was drawn.
 */
export function renderNodes(visible, { force = false, full = false } = {}) {
  const nodes = N.data?.nodes || [];
  $("nodes-total").textContent = nodes.length;
  if (!visible || (!force && N.drawn === N.version)) return null;
  const began = performance.now();
  if (full) { rows.clear(); N.order = ""; }
  const data = N.data;
  const focus = data?.focus ?? null;
  const seen = new Set();
  for (const node of nodes) {
    seen.add(node.id);
    let row = rows.get(node.id);
    if (!row) { row = newRow(node.id); rows.set(node.id, row); }
    updateRow(row, node, node.id === focus, force);
  }
  for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
  const order = nodes.map((n) => n.id).join(",");
  if (order !== N.order) {
    N.order = order;
    $("nodes-body").replaceChildren(...nodes.map((n) => rows.get(n.id).tr));
  }
  $("nodes-empty").hidden = nodes.length > 0;
  $("nodes-summary").textContent = summaryText(data, nodes);
  const problems = data?.problems || [];
  $("nodes-problems").hidden = problems.length === 0;
  $("nodes-problems").textContent = problems.join(" · ");
  N.drawn = N.version;
  void $("nodes-table").offsetHeight; // style and layout, inside the measurement
  const took = performance.now() - began;
  timings.push(took);
  if (timings.length > KEEP_TIMINGS) timings.splice(0, timings.length - KEEP_TIMINGS);
  return took;
}

function summaryText(data, nodes) {
  if (!data) return "this dashboard keeps no Nodes view";
  const count = (s) => nodes.filter((n) => n.status === s).length;
  let text = `${nodes.length} nodes: ${count("live")} live, ${count("connecting")} connecting, ` +
    `${count("gone")} gone, ${count("refused")} refused (at most ${data.max} followed)`;
  if (data.notFollowed) text += ` · ${data.notFollowed} more found, not followed`;
  if (data.lan) text += " · browsing the local network";
  return text;
}

function newRow(id) {
  const tr = dom.el("tr", { dataset: { id }, title: "show this node in every view" });
  const cells = {};
  for (const name of COLUMNS) {
    const inner = name === "peer" || name === "url" ? dom.el("code") : dom.el("span");
    cells[name] = inner;
    tr.append(dom.el("td", { className: `c-${name}` }, inner));
  }
  const canvas = dom.el("canvas", { width: SPARK_W * devicePixelRatio, height: SPARK_H * devicePixelRatio,
    style: { width: `${SPARK_W}px`, height: `${SPARK_H}px` } });
  const remove = dom.el("button", { type: "button", className: "remove icon", title: "stop following this node" }, "×");
  tr.append(dom.el("td", { className: "c-spark" }, canvas), dom.el("td", { className: "c-actions" }, remove));
  return { tr, cells, shown: {}, canvas, remove, sparkKey: "", rowClass: "" };
}

function setCell(row, name, text, title) {
  if (row.shown[name] === text && row.shown[`${name}:title`] === title) return;
  row.shown[name] = text;
  row.shown[`${name}:title`] = title;
  row.cells[name].textContent = text;
  row.cells[name].title = title;
}

function updateRow(row, node, focused, force) {
  const live = node.status === "live";
  const rowClass = `node-row node-${node.status}${focused ? " focused" : ""}`;
  if (row.rowClass !== rowClass) { row.rowClass = rowClass; row.tr.className = rowClass; }
  const since = `${node.status} since ${fmt.clock(node.since)}`;
  setCell(row, "status", node.status, node.error ? `${since}: ${node.error}` : since);
  row.cells.status.className = `node-status st-${node.status}`;
  setCell(row, "peer", node.peerId || "—", node.peerId);
  setCell(row, "impl", node.implementation || "—", node.implementation);
  const where = node.origins.join(", ") + (node.tokenRequired ? " · token required" : "");
  setCell(row, "url", node.url, `${node.url} (${where})`);
  const total = node.connsTotal === node.conns ? "" : ` / ${node.connsTotal}`;
  const has = live || node.ts > 0;
  setCell(row, "conns", has ? `${node.conns}${total}` : "—", `${node.conns} active of ${node.connsTotal}`);
  setCell(row, "streams", has ? String(node.streams) : "—", "");
  setCell(row, "in", has ? fmt.rate(node.bwIn) : "—", "");
  setCell(row, "out", has ? fmt.rate(node.bwOut) : "—", "");
  row.remove.hidden = !node.origins.includes("added");
  const last = node.spark[node.spark.length - 1];
  const sparkKey = `${node.spark.length}|${last ? last[0] : 0}|${node.status}`;
  if (force || sparkKey !== row.sparkKey) { row.sparkKey = sparkKey; drawSpark(row.canvas, node.spark, live); }
}

/** In and out bandwidth over the points kept (one scale for both), on a canvas. */
function drawSpark(canvas, points, live) {
  const g = canvas.getContext("2d");
  const ratio = canvas.width / SPARK_W;
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, SPARK_W, SPARK_H);
  if (points.length < 2) return;
  let top = 1;
  for (const p of points) top = Math.max(top, p[1], p[2]);
  const t0 = points[0][0];
  const span = Math.max(1, points[points.length - 1][0] - t0);
  g.globalAlpha = live ? 1 : 0.4;
  g.lineWidth = 1.25;
  for (const [index, color] of [[1, "#1f9d6b"], [2, "#d9772b"]]) {
    g.strokeStyle = color;
    g.beginPath();
    points.forEach((p, i) => {
      const x = ((p[0] - t0) / span) * (SPARK_W - 2) + 1;
      const y = SPARK_H - 2 - (Number(p[index]) / top) * (SPARK_H - 4);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

/** For the benchmark and the console: redraw now and say how long it took (ms). */
export function redraw(full = false) {
  return renderNodes(true, { force: true, full });
}
