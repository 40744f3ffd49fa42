// Formatting helpers: bytes, rates, durations, times, peer ids. No DOM state.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 -> "1.5 KiB" */
export function bytes(n) {
  n = Number(n) || 0;
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${UNITS[i]}`;
}

/** bytes per second -> "1.5 KiB/s" */
export function rate(n) {
  return `${bytes(n)}/s`;
}

/** ms -> "850 ms", "12.3 s", "3m 05s", "2h 04m", "3d 02h" */
export function duration(ms) {
  ms = Math.max(0, Number(ms) || 0);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, "0")}h`;
}

/** latency in ns -> "1.23 ms" ("—" when unknown) */
export function latency(ns) {
  ns = Number(ns) || 0;
  if (!ns) return "—";
  const ms = ns / 1e6;
  return ms < 1 ? `${(ns / 1e3).toFixed(0)} µs` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** ms since epoch -> "14:03:07" (local time) */
export function clock(ts) {
  if (!ts) return "—";
  const d = new Date(Number(ts));
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** ms since epoch -> "14:03:07.123" */
export function clockMs(ts) {
  if (!ts) return "—";
  return `${clock(ts)}.${pad(new Date(Number(ts)).getMilliseconds(), 3)}`;
}

/** ms since epoch -> "2020-06-15 10:39:46" (local time) */
export function dateTime(ts) {
  if (!ts) return "—";
  const d = new Date(Number(ts));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ts)}`;
}

/** "12D3KooWAbc…xyz12" for long ids */
export function shortPeer(id) {
  if (!id) return "";
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

const PALETTE = ["#2f6fdb", "#c0392b", "#1f9d6b", "#8e44ad", "#d9772b", "#16a085", "#b7950b",
  "#2c3e50", "#d35400", "#7f8c8d"];
const colors = new Map();

/** A color per name (event types): palette colors in the order names are first seen. */
export function colorFor(name) {
  if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
  return colors.get(name);
}

/** Copy text to the clipboard (with a fallback where the async API is refused). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch { ok = false; }
    area.remove();
    return ok;
  }
}
