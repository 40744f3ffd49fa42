// The Peers view: the peers of the snapshot shown (ctx.v), one row per peer id, with
// what identify said of them (a connection's "peerInfo", convert_ext.py's PEERINFO),
// grouped by agent version, the most common agent first.
//
// A peer with several connections is one row: its identify data from an active
// connection if it has one (the newest answer), else from any connection that has it.
// Every string is data from a server or a file: text only, through dom.js (the group
// headers too: Tabulator would put a string there as HTML), and shown with
// dom.visible, so look-alike agents (a trailing space, a zero-width or bidi character)
// read differently. A group is known by a key no agent string can be: "=" + the agent,
// or one of the built-in groups' keys (labelled in words, not as an agent).
//
// Bounded for the view's 40,000 connections: at most MAX_CHIPS agent chips (the most
// common, among those the "find an agent" box matches) then "+M more"; the table has a
// group per chip, and one "other agents" group for the rest.

import * as dom from "./dom.js";
import { build, copyOnClick, peerFormatter } from "./tables.js";

const $ = (id) => document.getElementById(id);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
/** The group key of the peers that have not answered identify (yet). */
export const NOT_IDENTIFIED = "#not-identified";
/** The group key of the identified peers that sent no agent version. */
export const NO_AGENT = "#no-agent";
/** The group key of the agents past the chips shown. */
export const OTHER = "#other";
/** At most this many agent chips (and table groups) are drawn. */
export const MAX_CHIPS = 40;
const LABELS = { [NOT_IDENTIFIED]: "not identified", [NO_AGENT]: "no agent version", [OTHER]: "other agents" };
const builtIn = (key) => Object.hasOwn(LABELS, key);
/** The agent (as sent) of a group key; "" for a built-in group. */
const agentOfKey = (key) => (builtIn(key) ? "" : key.slice(1));

/** The group key of a peer's identify data (module comment). */
function groupOf(info) {
  if (!info) return NOT_IDENTIFIED;
  return info.agent ? `=${info.agent}` : NO_AGENT;
}

/**
 * One row per peer id of the snapshot v: {key, peer, group, agent, identified, conns,
 * active, protoVersion, protocols: [str], nprotocols, listen: [multiaddr], observed}
 * (group: the group key; agent: as the peer sent it, "" when none).
 */
export function peerRows(v) {
  const byPeer = new Map();
  for (const c of v ? v.conns : []) {
    let p = byPeer.get(c.peer);
    if (!p) { p = { peer: c.peer, conns: 0, active: 0, info: null, infoActive: false }; byPeer.set(c.peer, p); }
    p.conns += 1;
    const active = c.status === "ACTIVE";
    if (active) p.active += 1;
    if (c.peerInfo && (!p.info || (active && !p.infoActive))) { p.info = c.peerInfo; p.infoActive = active; }
  }
  return [...byPeer.values()].map((p, i) => {
    const info = p.info;
    return {
      key: i, peer: p.peer, group: groupOf(info), agent: info ? info.agent || "" : "", identified: Boolean(info),
      conns: p.conns, active: p.active, protoVersion: info ? info.protoVersion : "", protocols: info ? info.protocols : [],
      nprotocols: info ? info.protocols.length : 0, listen: info ? info.listen : [], observed: info ? info.observed : "",
    };
  });
}

// Where a group goes in the order: the agents first, then no agent, then not identified.
const lastly = (key) => (key === NOT_IDENTIFIED ? 2 : key === NO_AGENT ? 1 : 0);

/** Groups of the rows, the most common first (ties by agent; the peers without an agent
 * version, then those not identified, last): [[group key, peers], ...]. */
export function agentCounts(rows) {
  const counts = new Map();
  for (const r of rows) counts.set(r.group, (counts.get(r.group) || 0) + 1);
  return [...counts.entries()].sort((a, b) => lastly(a[0]) - lastly(b[0]) || b[1] - a[1] ||
    (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Whether the group `key` matches the "find an agent" text `query` (lowercase). */
function matches(key, query) {
  if (!query) return true;
  const text = builtIn(key) ? LABELS[key] : agentOfKey(key);
  return text.toLowerCase().includes(query) || dom.visible(text).toLowerCase().includes(query);
}

const muted = (t) => dom.el("span", { className: "muted" }, t);
const listTip = (items) => (items.length ? dom.el("div", { className: "tip-lines" }, items.map(dom.visible).join("\n")) : "");
const visibleTip = (value) => dom.tip(dom.visible(value));
// A list cell: the first item (as code) and how many more.
const listCell = (c) => {
  const items = c.getValue();
  if (!items.length) return muted("—");
  return dom.el("span", {}, dom.el("code", {}, dom.visible(items[0])), items.length > 1 ? muted(` +${items.length - 1}`) : null);
};

/** A group's label: a built-in group's name in words, an agent as visible code (clipped
 * by the stylesheet; its whole text in the title). */
function groupLabel(key) {
  if (builtIn(key)) return dom.el("span", { className: "muted builtin" }, LABELS[key]);
  const shown = dom.visible(agentOfKey(key));
  return dom.el("code", { className: "agent", title: shown }, shown);
}

function peersTable(el, { onCopied, order }) {
  const copy = copyOnClick(onCopied);
  return build(el, {
    index: "key",
    maxHeight: "60vh",
    layout: "fitColumns",
    placeholder: "no peers in this snapshot",
    groupBy: "shown",
    groupValues: [[]], // set from the rows (peersView): the most common agent first
    groupHeader: (value, count) => dom.el("span", { className: "agent-group" }, groupLabel(value),
      dom.el("span", { className: "count" }, plural(count, "peer"))),
    initialSort: [{ column: "peer", dir: "asc" }],
    columns: [
      { title: "Peer", field: "peer", formatter: peerFormatter, minWidth: 150, cellClick: (e) => copy(e) },
      { title: "Connections", field: "conns", hozAlign: "right", sorter: "number", minWidth: 104,
        formatter: (c) => {
          const r = c.getRow().getData();
          return r.active === r.conns ? String(r.conns) : `${r.active} / ${r.conns}`;
        },
        tooltip: (e, c) => {
          const r = c.getRow().getData();
          return dom.tip(`${plural(r.active, "active connection")} of ${r.conns} shown`);
        } },
      { title: "Protocol version", field: "protoVersion", minWidth: 120, tooltip: (e, c) => visibleTip(c.getValue()),
        formatter: (c) => (c.getRow().getData().identified ? dom.el("span", {}, dom.visible(c.getValue())) : muted("—")) },
      { title: "Protocols", field: "nprotocols", hozAlign: "right", sorter: "number", minWidth: 92,
        formatter: (c) => (c.getRow().getData().identified ? String(c.getValue()) : muted("—")),
        tooltip: (e, c) => listTip(c.getRow().getData().protocols) },
      { title: "Listen addresses", field: "listen", minWidth: 200, widthGrow: 2, headerSort: false,
        formatter: listCell, tooltip: (e, c) => listTip(c.getValue()) },
      { title: "Sees us at", field: "observed", minWidth: 160, widthGrow: 1, tooltip: (e, c) => visibleTip(c.getValue()),
        formatter: (c) => (c.getValue() ? dom.el("code", {}, dom.visible(c.getValue())) : muted("—")) },
    ],
  });
}

export function peersView({ onCopied }) {
  let t = null;
  let lastV = null;
  let rows = [];
  let agents = [];
  let groupsKey = null;
  let chosen = null; // the group whose peers alone are shown (a chip clicked), or null
  let query = ""; // the "find an agent" text, lowercase
  function render(ctx) {
    if (!t) {
      t = peersTable($("peers-table"), { onCopied });
      t.setFilter((d) => (chosen === null ? matches(d.group, query) : d.group === chosen));
      $("peers-find").addEventListener("input", (e) => {
        query = e.target.value.trim().toLowerCase();
        draw();
      });
    }
    const v = ctx.v;
    if (v === lastV) return;
    lastV = v;
    rows = peerRows(v);
    agents = agentCounts(rows);
    const identified = rows.filter((r) => r.identified).length;
    if (chosen !== null && !agents.some(([key]) => key === chosen)) chosen = null;
    $("peers-summary").textContent = !v ? ctx.waiting : rows.length
      ? `${plural(rows.length, "peer")} (${identified} identified) · ${plural(agents.length, "agent")}`
      : "no peers in this snapshot";
    draw();
  }
  // Chips, groups and rows from the current rows, choice and query: a chip (and a table
  // group) for each of the first MAX_CHIPS matching agents (and the chosen one), the
  // rows of the others in one "other agents" group.
  function draw() {
    const found = agents.filter(([key]) => matches(key, query));
    const top = found.slice(0, MAX_CHIPS);
    const extra = chosen !== null && !top.some(([key]) => key === chosen)
      ? agents.find(([key]) => key === chosen) : undefined;
    if (extra) top.push(extra);
    const shown = new Set(top.map(([key]) => key));
    const more = found.length - Math.min(found.length, MAX_CHIPS) - (extra && matches(extra[0], query) ? 1 : 0);
    drawChips(top, more);
    for (const r of rows) r.shown = shown.has(r.group) ? r.group : OTHER;
    const values = chosen !== null ? [chosen] : [...shown, ...(more > 0 ? [OTHER] : [])];
    const key = JSON.stringify(values);
    if (key !== groupsKey) {
      groupsKey = key;
      t.ready.then(() => t.table.setGroupValues([values]));
    }
    t.set(rows); // replaceData filters (by chip and query) and groups them again: one pass
  }
  function drawChips(top, more) {
    const chips = top.map(([key, n]) => {
      const on = chosen === key;
      const chip = dom.el("button", {
        type: "button", className: `chip${on ? " on" : chosen !== null ? " off" : ""}`, dataset: { group: key },
        title: on ? "show every agent's peers" : "show only this agent's peers",
      }, groupLabel(key), dom.el("span", { className: "n" }, String(n)));
      chip.addEventListener("click", () => {
        chosen = on ? null : key;
        draw();
      });
      return chip;
    });
    if (more > 0) {
      const rest = dom.el("button", {
        type: "button", className: "chip more", title: `${plural(more, "more agent")}: type in "find an agent" to show them`,
      }, `+${more} more`);
      rest.addEventListener("click", () => $("peers-find").focus());
      chips.push(rest);
    }
    $("peers-agents").replaceChildren(...chips);
  }
  return { render, redraw: () => t && t.redraw() };
}
