// The Peers view: the peers of the snapshot shown (ctx.v), one row per peer id, with
// what identify said of them (a connection's "peerInfo", convert_ext.py's PEERINFO),
// grouped by agent version, the most common agent first.
//
// A peer with several connections is one row: its identify data from an active
// connection if it has one (the newest answer), else from any connection that has it.
// Every string is data from a server or a file: text only, through dom.js (the group
// headers too: Tabulator would put a string there as HTML).

import * as dom from "./dom.js";
import { build, copyOnClick, peerFormatter, textFormatter } from "./tables.js";

const $ = (id) => document.getElementById(id);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
/** The group of peers that have not answered identify (yet). */
export const NOT_IDENTIFIED = "(not identified)";
/** The group of identified peers that sent no agent version. */
export const NO_AGENT = "(no agent version)";

/** The agent a peer is grouped under. */
function agentOf(info) {
  if (!info) return NOT_IDENTIFIED;
  return info.agent || NO_AGENT;
}

/**
 * One row per peer id of the snapshot v: {key, peer, agent, identified, conns, active,
 * protoVersion, protocols: [str], nprotocols, listen: [multiaddr], observed}.
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
      key: i, peer: p.peer, agent: agentOf(info), identified: Boolean(info), conns: p.conns, active: p.active,
      protoVersion: info ? info.protoVersion : "", protocols: info ? info.protocols : [],
      nprotocols: info ? info.protocols.length : 0, listen: info ? info.listen : [], observed: info ? info.observed : "",
    };
  });
}

// Where an agent goes in the order: the ones named first, then no agent, then not identified.
const lastly = (agent) => (agent === NOT_IDENTIFIED ? 2 : agent === NO_AGENT ? 1 : 0);

/** Agents of the rows, the most common first (ties by name; the peers without an agent
 * version, then those not identified, last): [[agent, peers], ...]. */
export function agentCounts(rows) {
  const counts = new Map();
  for (const r of rows) counts.set(r.agent, (counts.get(r.agent) || 0) + 1);
  return [...counts.entries()].sort((a, b) => lastly(a[0]) - lastly(b[0]) || b[1] - a[1] ||
    (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

const muted = (t) => dom.el("span", { className: "muted" }, t);
const listTip = (items) => (items.length ? dom.el("div", { className: "tip-lines" }, items.join("\n")) : "");
// A list cell: the first item (as code) and how many more.
const listCell = (c) => {
  const items = c.getValue();
  if (!items.length) return muted("—");
  return dom.el("span", {}, dom.el("code", {}, items[0]), items.length > 1 ? muted(` +${items.length - 1}`) : null);
};

function peersTable(el, { onCopied, order }) {
  const copy = copyOnClick(onCopied);
  return build(el, {
    index: "key",
    maxHeight: "60vh",
    layout: "fitColumns",
    placeholder: "no peers in this snapshot",
    groupBy: "agent",
    groupValues: [[]], // set from the rows (peersView): the most common agent first
    groupHeader: (value, count) => dom.el("span", { className: "agent-group" },
      value === NOT_IDENTIFIED || value === NO_AGENT ? muted(value) : dom.el("code", {}, value),
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
      { title: "Protocol version", field: "protoVersion", minWidth: 120, tooltip: (e, c) => dom.tip(c.getValue()),
        formatter: (c) => (c.getRow().getData().identified ? textFormatter(c) : muted("—")) },
      { title: "Protocols", field: "nprotocols", hozAlign: "right", sorter: "number", minWidth: 92,
        formatter: (c) => (c.getRow().getData().identified ? String(c.getValue()) : muted("—")),
        tooltip: (e, c) => listTip(c.getRow().getData().protocols) },
      { title: "Listen addresses", field: "listen", minWidth: 200, widthGrow: 2, headerSort: false,
        formatter: listCell, tooltip: (e, c) => listTip(c.getValue()) },
      { title: "Sees us at", field: "observed", minWidth: 160, widthGrow: 1, tooltip: (e, c) => dom.tip(c.getValue()),
        formatter: (c) => (c.getValue() ? dom.el("code", {}, c.getValue()) : muted("—")) },
    ],
  });
}

export function peersView({ onCopied }) {
  let t = null;
  let lastV = null;
  let groupsKey = null;
  let chosen = null; // the agent whose peers alone are shown (a chip clicked), or null
  function render(ctx) {
    if (!t) {
      t = peersTable($("peers-table"), { onCopied });
      t.setFilter((d) => chosen === null || d.agent === chosen);
    }
    const v = ctx.v;
    if (v === lastV) return;
    lastV = v;
    const rows = peerRows(v);
    const agents = agentCounts(rows);
    const identified = rows.filter((r) => r.identified).length;
    if (chosen !== null && !agents.some(([agent]) => agent === chosen)) chosen = null;
    $("peers-summary").textContent = !v ? ctx.waiting : rows.length
      ? `${plural(rows.length, "peer")} (${identified} identified) · ${plural(agents.length, "agent")}`
      : "no peers in this snapshot";
    drawChips(agents);
    setGroups(agents);
    t.set(rows);
  }
  // Groups in the order of the chips (most peers first), whatever the rows' sort; only the
  // chosen agent's while one is (a group is shown for each value, rows or not).
  function setGroups(agents) {
    const values = chosen !== null ? [chosen] : agents.map(([agent]) => agent);
    const key = JSON.stringify(values);
    if (key === groupsKey) return;
    groupsKey = key;
    t.ready.then(() => t.table.setGroupValues([values]));
  }
  function drawChips(agents) {
    $("peers-agents").replaceChildren(...agents.map(([agent, n]) => {
      const on = chosen === agent;
      const label = agent === NOT_IDENTIFIED || agent === NO_AGENT ? muted(agent) : dom.el("code", {}, agent);
      const chip = dom.el("button", {
        type: "button", className: `chip${on ? " on" : chosen !== null ? " off" : ""}`, dataset: { agent },
        title: on ? "show every agent's peers" : "show only this agent's peers",
      }, label, dom.el("span", { className: "n" }, String(n)));
      chip.addEventListener("click", () => {
        chosen = on ? null : agent;
        drawChips(agents);
        setGroups(agents);
        t.ready.then(() => t.table.refreshFilter());
      });
      return chip;
    }));
  }
  return { render, redraw: () => t && t.redraw() };
}
