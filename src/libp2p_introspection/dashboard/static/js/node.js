// The node's own identity in the header (listen and observed addresses,
// reachability, the protocols it handles: the snapshot's "node", convert_ext.py's
// NODE) and a peer's identify data (a connection's "peerInfo", PEERINFO).
//
// Every string is data from a server or a file: set as text through dom.js.

import * as dom from "./dom.js";

const $ = (id) => document.getElementById(id);

const REACHABILITY = {
  PUBLIC: "public", PRIVATE: "private (behind NAT)", UNKNOWN: "unknown (AutoNAT has not decided)",
  NOT_RUNNING: "not checked (no AutoNAT service)",
};

/** A list of addresses as code elements, one per line ("none" when empty). */
function addrList(addrs) {
  if (!addrs.length) return [dom.el("span", { className: "muted" }, "none")];
  return addrs.map((a) => dom.el("code", { className: "addr" }, a));
}

let lastNode = undefined;
/** Show the header's node fields for the snapshot v (its "node", or null: not reported). */
export function renderNodeInfo(v) {
  const node = v ? v.node : null;
  const key = node ? JSON.stringify(node) : String(Boolean(v));
  if (key === lastNode) return;
  lastNode = key;
  const box = $("node-ext");
  box.hidden = !node;
  $("node-ext-absent").hidden = !v || Boolean(node);
  if (!node) return;
  $("node-listen").replaceChildren(...addrList(node.listen));
  $("node-observed").replaceChildren(...addrList(node.observed));
  const reach = $("node-reach");
  reach.textContent = REACHABILITY[node.reachability] || node.reachability;
  reach.className = `reach reach-${/^[A-Z_]+$/.test(node.reachability) ? node.reachability : "OTHER"}`;
  reach.title = `reachability: ${node.reachability}`;
  const protos = node.protocols;
  $("node-protocols-count").textContent = `${protos.length} protocol${protos.length === 1 ? "" : "s"}`;
  $("node-protocols-list").replaceChildren(...protos.map((p) => dom.el("li", {}, dom.el("code", {}, p))));
}

/** The agent cell's text: the agent version, or why there is none. */
export function agentText(info) {
  if (!info) return "";
  return info.agent || "(no agent version)";
}

/** A peer's identify data as lines of text (a tooltip), or one line saying it has none. */
export function peerInfoLines(info) {
  if (!info) return "not identified yet (no identify answer from this peer)";
  return [
    `agent: ${info.agent || "—"}`,
    `protocol version: ${info.protoVersion || "—"}`,
    `protocols (${info.protocols.length}): ${info.protocols.join(", ") || "—"}`,
    `listen addresses: ${info.listen.join(", ") || "—"}`,
    `sees us at: ${info.observed || "—"}`,
  ].join("\n");
}

/** A peer's identify data as a definition list (the connection detail). */
export function peerInfoBlock(info) {
  if (!info) return dom.el("p", { className: "muted" }, "This peer was not identified yet (no identify answer).");
  const row = (label, ...values) => [dom.el("dt", {}, label), dom.el("dd", {}, ...values)];
  const codes = (items) => (items.length ? items.map((x) => dom.el("code", { className: "addr" }, x)) : ["—"]);
  return dom.el("dl", { className: "peer-info" },
    ...row("agent", info.agent || "—"),
    ...row("protocol version", info.protoVersion || "—"),
    ...row(`protocols (${info.protocols.length})`, ...codes(info.protocols)),
    ...row("listen addresses", ...codes(info.listen)),
    ...row("sees us at", info.observed ? dom.el("code", {}, info.observed) : "—"));
}
