// Building page elements from data without ever parsing it as markup.
//
// Every string the page shows comes from an introspection server or a
// recording file (peer ids, multiaddrs, protocol ids, event types and
// content, file names): it is text, never HTML. These helpers create
// elements and set text with textContent / properties only, so nothing in
// this code base assigns data to innerHTML (Tabulator formatters and
// tooltips return these elements instead of HTML strings).

const SVG = "http://www.w3.org/2000/svg";

/**
 * el("code", {className: "x", title: t, dataset: {copy: id}}, child, ...):
 * an element; children are Nodes or values shown as text (null/undefined skipped).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "innerHTML" || key === "outerHTML") throw new Error("el(): text only");
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A text node of any value ("" for null/undefined). */
export function text(value) {
  return document.createTextNode(value === null || value === undefined ? "" : String(value));
}

/** A Tabulator tooltip showing `value` as text (nothing for an empty value). */
export function tip(value) {
  const shown = value === null || value === undefined ? "" : String(value);
  return shown === "" ? "" : el("div", {}, shown);
}

/** The small "copy" icon (two rectangles), as SVG elements. */
export function copyIcon(size = 12) {
  const svg = document.createElementNS(SVG, "svg");
  for (const [k, v] of [["width", size], ["height", size], ["viewBox", "0 0 16 16"], ["aria-hidden", "true"]]) {
    svg.setAttribute(k, String(v));
  }
  const stroke = { fill: "none", stroke: "currentColor", "stroke-width": "1.6" };
  const rect = document.createElementNS(SVG, "rect");
  for (const [k, v] of Object.entries({ x: 5, y: 5, width: 9, height: 9, rx: 1.5, ...stroke })) rect.setAttribute(k, String(v));
  const path = document.createElementNS(SVG, "path");
  for (const [k, v] of Object.entries({ d: "M3 11V3.5A1.5 1.5 0 0 1 4.5 2H11", ...stroke })) path.setAttribute(k, String(v));
  svg.append(rect, path);
  return svg;
}

// Characters that show as nothing, look like a space, or change how the text around them
// reads (controls, format characters such as zero-width and bidi overrides, private use,
// unassigned, lone surrogates, line/paragraph separators, the other spaces) and the
// backslash (so an escape below never looks like one a string spelled itself).
const HIDDEN = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\p{Zl}\p{Zp}\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0\\]/gu;
const escaped = (ch) => {
  if (ch === "\\") return "\\\\";
  const cp = ch.codePointAt(0);
  const hex = cp.toString(16).toUpperCase();
  return cp > 0xffff ? `\\u{${hex}}` : `\\u${hex.padStart(4, "0")}`;
};

/**
 * `value` as text whose every character shows: each invisible, control, bidi or
 * look-alike space character as its escape (U+202E as "\u202E"), a backslash as "\\",
 * and the spaces that begin or end it (or make it up) as "\u0020". Two strings that
 * differ show differently. ("" for null/undefined.)
 */
export function visible(value) {
  const s = value === null || value === undefined ? "" : String(value);
  return s.replace(HIDDEN, escaped).replace(/^ +| +$/g, (spaces) => "\\u0020".repeat(spaces.length));
}
