// Tabulator tables of the §3.1 views: protocols, pubsub topics and peers, resource
// scopes. Built like tables.js's (build(), text-only formatters and tooltips).

import * as fmt from "./format.js";
import * as dom from "./dom.js";
import { build, copyOnClick, peerFormatter, textCol, textFormatter, trafficCol } from "./tables.js";

const num = (title, field, minWidth = 80, extra = {}) => ({
  title, field, hozAlign: "right", sorter: "number", minWidth, formatter: textFormatter, ...extra,
});
const lines = (text) => (text ? dom.el("div", { className: "tip-lines" }, text) : "");

/** Per-protocol traffic (rows: {key, proto, active, opened, in, out, bwIn, bwOut}). */
export function protocolsTable(el) {
  return build(el, {
    index: "key",
    maxHeight: "40vh",
    layout: "fitColumns",
    placeholder: "no per-protocol traffic in this snapshot",
    initialSort: [{ column: "total", dir: "desc" }],
    columns: [
      { title: "Protocol", field: "proto", minWidth: 240, widthGrow: 3, tooltip: (e, c) => dom.tip(c.getValue()),
        formatter: (c) => (c.getValue() ? dom.el("code", {}, c.getValue())
          : dom.el("span", { className: "muted" }, "(closed before negotiating)")) },
      num("Active streams", "active", 110),
      num("Streams opened", "opened", 116),
      trafficCol("In", "in", "bwIn"),
      trafficCol("Out", "out", "bwOut"),
      { title: "Total", field: "total", hozAlign: "right", sorter: "number", minWidth: 90,
        formatter: (c) => fmt.bytes(c.getValue()) },
    ],
  });
}

const rateText = (r) => (r === null || r === undefined ? "—" : `${r < 10 ? r.toFixed(1) : Math.round(r)}/s`);
// Messages: the count, and the rate below it.
const msgCol = (title, field, rateField, bytesField) => ({
  title, field, hozAlign: "right", sorter: "number", minWidth: 96, variableHeight: true,
  formatter: (c) => {
    const r = c.getRow().getData();
    return dom.el("span", {}, String(r[field]), dom.el("br"), dom.el("span", { className: "rate" }, rateText(r[rateField])));
  },
  tooltip: (e, c) => {
    const r = c.getRow().getData();
    return dom.tip(`${r[field]} messages, ${r[bytesField]} data bytes; ${rateText(r[rateField])} messages now`);
  },
});

/** Pubsub topics (rows: convert_ext.py's TOPIC, and a unique key). */
export function topicsTable(el) {
  return build(el, {
    index: "key",
    maxHeight: "40vh",
    layout: "fitColumns",
    placeholder: "the router knows no topic yet",
    initialSort: [{ column: "name", dir: "asc" }],
    columns: [
      { title: "Topic", field: "name", minWidth: 180, widthGrow: 2, tooltip: (e, c) => dom.tip(c.getValue()),
        formatter: (c) => dom.el("code", {}, c.getValue()) },
      { title: "Subscribed", field: "subscribed", minWidth: 96,
        formatter: (c) => (c.getValue() ? "yes" : dom.el("span", { className: "muted" }, "no")) },
      num("Mesh", "mesh", 70, { tooltip: (e, c) => lines(c.getRow().getData().meshPeers.join("\n")) }),
      num("Fanout", "fanout", 74),
      num("Known", "known", 74, { headerTooltip: () => dom.tip("peers known to be subscribed") }),
      msgCol("Msgs in", "msgIn", "rateIn", "bytesIn"),
      msgCol("Msgs out", "msgOut", "rateOut", "bytesOut"),
      trafficCol("Bytes in", "bytesIn", "bwIn"),
      trafficCol("Bytes out", "bytesOut", "bwOut"),
    ],
  });
}

/** Pubsub peers (rows: {peer, protocol, score, topics: "a b", ntopics}). */
export function pubsubPeersTable(el, { onCopied }) {
  const copy = copyOnClick(onCopied);
  return build(el, {
    index: "key",
    maxHeight: "40vh",
    layout: "fitColumns",
    placeholder: "no pubsub peers",
    initialSort: [{ column: "score", dir: "asc" }],
    columns: [
      { title: "Peer", field: "peer", formatter: peerFormatter, minWidth: 150, cellClick: (e) => copy(e) },
      textCol("Protocol", "protocol", 140),
      { title: "Score", field: "score", hozAlign: "right", sorter: "number", minWidth: 80,
        formatter: (c) => {
          const s = c.getValue();
          if (s === null || s === undefined) return dom.el("span", { className: "muted" }, "not a number");
          return dom.el("span", { className: s < 0 ? "score-bad" : "" }, Number.isInteger(s) ? String(s) : s.toFixed(3));
        } },
      { title: "Topics", field: "topics", minWidth: 200, widthGrow: 2, formatter: textFormatter,
        tooltip: (e, c) => lines(c.getRow().getData().topicList.join("\n")) },
    ],
  });
}

const USAGE = [["conns", "connections"], ["streams", "streams"]];

// "used / limit", 0 = no limit; directional values when the manager keeps them.
function usageCell(usage, limit, prefix) {
  const parts = [];
  const total = usage[`${prefix}Total`];
  const totalLimit = limit[`${prefix}Total`];
  parts.push(`${total} / ${totalLimit ? totalLimit : "no limit"}`);
  const dirs = usage[`${prefix}In`] || usage[`${prefix}Out`] || limit[`${prefix}In`] || limit[`${prefix}Out`];
  const sub = dirs ? `in ${usage[`${prefix}In`]}/${limit[`${prefix}In`] || "∞"} · out ${usage[`${prefix}Out`]}/${limit[`${prefix}Out`] || "∞"}` : "";
  return { text: parts[0], sub, ratio: totalLimit ? total / totalLimit : 0 };
}

function usageFormatter(getter) {
  return (c) => {
    const u = getter(c.getRow().getData());
    const bar = dom.el("span", { className: "bar" }, dom.el("span", {
      className: `fill${u.ratio >= 0.9 ? " high" : ""}`, style: { width: `${Math.min(100, Math.round(u.ratio * 100))}%` },
    }));
    return dom.el("span", { className: "usage" }, u.text, u.ratio ? bar : null,
      u.sub ? dom.el("span", { className: "rate" }, u.sub) : null);
  };
}

/** Resource scopes (rows: {key, name, usage, limit} as convert_ext.py's RESOURCES scopes). */
export function scopesTable(el) {
  const columns = [
    { title: "Scope", field: "name", minWidth: 200, widthGrow: 2, tooltip: (e, c) => dom.tip(c.getValue()),
      formatter: (c) => dom.el("code", {}, c.getValue()) },
  ];
  for (const [prefix, label] of USAGE) {
    columns.push({ title: label, field: `${prefix}Used`, hozAlign: "left", sorter: "number", minWidth: 170,
      variableHeight: true, formatter: usageFormatter((r) => usageCell(r.usage, r.limit, prefix)) });
  }
  columns.push({ title: "memory", field: "memoryUsed", sorter: "number", minWidth: 170, variableHeight: true,
    formatter: usageFormatter((r) => ({
      text: `${fmt.bytes(r.usage.memory)} / ${r.limit.memory ? fmt.bytes(r.limit.memory) : "no limit"}`,
      sub: "", ratio: r.limit.memory ? r.usage.memory / r.limit.memory : 0,
    })) });
  columns.push({ title: "fds", field: "fdsUsed", hozAlign: "right", sorter: "number", minWidth: 90,
    formatter: (c) => {
      const r = c.getRow().getData();
      return `${r.usage.fds} / ${r.limit.fds ? r.limit.fds : "no limit"}`;
    } });
  return build(el, {
    index: "key",
    maxHeight: "56vh",
    layout: "fitColumns",
    placeholder: "the resource manager reports no scope",
    columns,
  });
}
