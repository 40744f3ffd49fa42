// Tabulator tables of the dashboard: connections, streams, DHT buckets, events.
// Each function builds one table and returns {table, ready, set(rows)}; rows are
// plain objects made by app.js from the snapshot shown.
//
// Cell values come from a server or a recording: formatters and tooltips
// return elements built by dom.js (text only), never HTML strings, which
// Tabulator would assign to innerHTML.

import * as fmt from "./format.js";
import * as dom from "./dom.js";
import { peerInfoLines } from "./node.js";
import { getJson } from "./feed.js";

/* global Tabulator */

// The set() calls not yet drawn, of every table (allSet() waits for them).
const busy = new Set();

/** Resolves once every table's set() so far is drawn (the redraw timings wait for it). */
export function allSet() {
  return Promise.all(busy);
}

/** Counts `drawn` (a promise) among what allSet() waits for, until it settles. */
function track(drawn) {
  busy.add(drawn);
  drawn.finally(() => busy.delete(drawn));
  return drawn;
}

// Rows from which a table's height is fixed (at its maxHeight): sized to its content, a
// table of thousands of rows loses its scroll position at every replaceData (a new
// snapshot), and may show no row at all; a small one keeps the room it needs.
const FIXED_HEIGHT_ROWS = 200;

// Rows of two lines (a traffic cell: bytes, and the rate below; endpoints: two addresses),
// all of one height (app.css: .two-line-rows, 16 px lines and 4 px padding).
// Told the table, it sizes a row without measuring each of its cells: at every snapshot
// the virtual renderer draws the rows in view again, and measuring 14 cells of each of
// them (a layout each) took most of it. Few rows beyond those in view (BUFFER_PX above
// and below): they are drawn as the user scrolls to them.
const TWO_LINE_ROW_PX = 40;
const BUFFER_PX = 160;

export function build(el, tableOptions) {
  // inPlace: rows keep their table row (and its cells' elements) from one set() to the next
  // when their index is the same (updateInPlace); deps: {field: another field its cell
  // shows too}, so that the cell is drawn again when either changes.
  const { inPlace = false, deps = {}, twoLineRows = false, ...options } = tableOptions;
  if (twoLineRows) {
    el.classList.add("two-line-rows");
    options.rowHeight = TWO_LINE_ROW_PX;
    options.renderVerticalBuffer = BUFFER_PX;
  }
  const table = new Tabulator(el, options);
  let fixed = !options.maxHeight;
  let built = false;
  const ready = new Promise((resolve) => table.on("tableBuilt", () => { built = true; resolve(); }));
  let pending = null;
  let running = false;
  // The filter: filterFor() makes the row test of the moment (the inputs read once per
  // pass, not once per row), or null: no filter, and Tabulator skips filtering.
  let filterFor = () => null;
  let test = null;
  const rowTest = (d) => test(d);
  function applyFilter() {
    const next = filterFor();
    const had = test !== null;
    test = next;
    if (next) table.setFilter(rowTest);
    else if (had) table.clearFilter();
  }
  // replaceData keeps sort, filters and scroll; calls are coalesced (latest wins). The
  // rows are sorted here first as the table will sort them (its own sort, which calls
  // back into every row's component for each comparison, then finds them in order:
  // one comparison a row instead of log2(rows)), so the order stays the table's own.
  function set(rows) {
    const drawn = setRows(rows);
    busy.add(drawn);
    drawn.finally(() => busy.delete(drawn));
    return drawn;
  }
  async function setRows(rows) {
    pending = rows;
    if (running) return;
    running = true;
    await ready;
    while (pending !== null) {
      const next = pending;
      pending = null;
      const want = filterFor();
      if ((want === null) !== (test === null)) applyFilter();
      else test = want;
      if (!fixed && next.length >= FIXED_HEIGHT_ROWS) {
        fixed = true; // for good: a table that held that many may again
        table.setHeight(options.maxHeight);
      }
      // In place, the rows come in the previous order; ties are put back in the order
      // given (next's), so that they sort as a fresh table of the same rows sorts them.
      const rows = inPlace ? presort(table, inPreviousOrder(table, next, options.index), next)
        : presort(table, next);
      if (!inPlace || !updateInPlace(table, rows, options.index, deps)) await table.replaceData(rows);
    }
    running = false;
  }
  // Filters and redraws only once the table exists (Tabulator warns, or fails, before).
  /** make(): the row test of the moment, (d) => bool, or null for no filter (asked again
   *  at every set() and refilter()). */
  const filterBy = (make) => { filterFor = make; return ready.then(applyFilter); };
  /** fn(d) => bool: the row test, always on. */
  const setFilter = (fn) => filterBy(() => fn);
  /** Filter again (an input changed). */
  const refilter = () => ready.then(applyFilter);
  const redraw = () => { if (built && el.offsetParent !== null) table.redraw(true); };
  return { table, ready, set, setFilter, filterBy, refilter, redraw };
}

// Per table: {rows, length: the row manager's rows array it was made for and its length
// then, byIndex: index -> row}.
const rowIndexes = new WeakMap();
let updateStamp = 0;

/**
 * Give table the rows `rows` (plain objects, in order), keeping the table's row of every
 * index it holds already: its data replaced, and, when it is drawn, only its cells whose
 * value changed formatted again; rows of new indexes added, those of indexes gone removed;
 * then sorted, filtered and drawn again in position (the scroll kept), as replaceData
 * does. Replacing builds a new row, its cells and their elements for each of 5,000 or
 * 50,000 rows at every snapshot (and measures the height of each drawn one again): the
 * most of a redraw. A hovered, focused or selected cell whose value did not change is
 * the same element after the update.
 *
 * Uses Tabulator's row manager and row objects (6.5: rows, data, cells, initialized,
 * element; refreshActiveData), which its public API has no call for (updateData looks
 * each row up by a scan of all rows). Returns false (nothing done) when the table holds
 * no row or is given none: replaceData does those (it builds the first rows, and shows
 * the placeholder).
 */
export function updateInPlace(table, rows, index, deps = {}) {
  const manager = table.rowManager;
  const current = manager?.rows;
  if (!Array.isArray(current) || !current.length || !rows.length) return false;
  const Row = current[0].constructor;
  let known = rowIndexes.get(table);
  if (!known || known.rows !== current || known.length !== current.length) { // replaced since: index them
    known = { rows: current, length: current.length, byIndex: new Map() };
    for (const row of current) known.byIndex.set(row.data[index], row);
    rowIndexes.set(table, known);
  }
  const byIndex = known.byIndex;
  const stamp = ++updateStamp;
  const formatRow = table.options.rowFormatter;
  const next = new Array(rows.length);
  for (let i = 0; i < rows.length; i += 1) {
    const d = rows[i];
    let row = byIndex.get(d[index]);
    if (row === undefined || row.updateStamp === stamp) { // new, or an index given twice
      row = new Row(d, manager);
      row.updateStamp = stamp;
      row.order = i;
      next[i] = row;
      if (!byIndex.has(d[index])) byIndex.set(d[index], row);
      continue;
    }
    row.updateStamp = stamp;
    row.order = i;
    next[i] = row;
    const old = row.data;
    row.data = d;
    if (!row.initialized) continue;
    if (!row.element || !row.element.parentNode) { row.initialized = false; continue; } // built again when shown
    if (old !== d) { // the same object: nothing to compare (the row formatter still runs)
      for (const cell of row.cells) {
        const field = cell.column.field;
        if (!field) continue;
        const dep = deps[field];
        if (cell.value !== d[field] || (dep !== undefined && old[dep] !== d[dep])) cell.setValueActual(d[field]);
      }
    }
    if (formatRow) formatRow(row.getComponent());
  }
  for (const row of current) {
    if (row.updateStamp === stamp) continue;
    if (byIndex.get(row.data[index]) === row) byIndex.delete(row.data[index]);
    row.wipe();
  }
  manager.rows = next;
  known.rows = next;
  known.length = next.length;
  table.inWindow = refreshInWindow(table); // whether the shortcut held (for the timings)
  if (!table.inWindow) manager.refreshActiveData(false, false, true);
  return true;
}

/**
 * Sort and filter table's rows again (Tabulator's data pipelines) and bring the rows drawn
 * up to date without drawing the table again: the rows at the drawn positions (the
 * virtual renderer's vDomTop..vDomBottom) are put in place, those not drawn before built
 * (with this snapshot's data), the others kept as updateInPlace left them (their changed
 * cells formatted again); the scroll position and the drawn range stay, the space below
 * them follows the number of rows. Tabulator's own redraw in position (refreshActiveData's
 * renderInPosition) takes every drawn row out and puts it back, forgets the height of
 * each of the table's rows and measures the drawn ones again (several layouts of the
 * page): the most of a Connections redraw at 5,000 rows. Returns false, having changed
 * nothing, where that shortcut does not hold (not a virtual table of one row height and a
 * fixed height, hidden, the drawn range at the table's end before or after, a redraw
 * blocked): the caller redraws then as Tabulator does.
 *
 * Uses Tabulator 6.5's row manager and virtual renderer (displayRows, activeRows,
 * activeRowsPipeline, refreshPipelines, vDomTop/vDomBottom/vDomBottomPad/vDomRowHeight/
 * vDomScrollHeight, styleRow, tableElement, _quickNormalizeRowHeight).
 */
export function refreshInWindow(table) {
  const manager = table.rowManager;
  const r = manager.renderer;
  if (!table.options.rowHeight || !manager.fixedHeight || manager.redrawBlock || !r
      || typeof r._quickNormalizeRowHeight !== "function" || typeof r.styleRow !== "function"
      || !r.tableElement || manager.element.offsetParent === null) return false;
  const top = r.vDomTop;
  const bottom = r.vDomBottom;
  const before = manager.getDisplayRows();
  if (!before.length || !(top >= 0) || bottom < top || bottom >= before.length - 1) return false;
  if (before.some((row) => row.type !== "row")) return false; // groups: Tabulator's redraw
  const shown = before.slice(top, bottom + 1);
  const saved = {
    displayRows: manager.displayRows, displayRowsCount: manager.displayRowsCount,
    activeRows: manager.activeRows, activeRowsCount: manager.activeRowsCount,
    pipeline: manager.activeRowsPipeline.slice(),
  };
  manager.refreshPipelines(false, "all", 0, true);
  const after = manager.getDisplayRows();
  if (bottom >= after.length - 1) { // fewer rows than the drawn range (and a screen): redraw
    manager.displayRows = saved.displayRows;
    manager.displayRowsCount = saved.displayRowsCount;
    manager.activeRows = saved.activeRows;
    manager.activeRowsCount = saved.activeRowsCount;
    manager.activeRowsPipeline = saved.pipeline;
    manager.regenerateRowPositions();
    return false;
  }
  let same = true;
  for (let k = top; k <= bottom; k += 1) if (after[k] !== shown[k - top]) { same = false; break; }
  if (!same) {
    const rows = document.createDocumentFragment();
    const fresh = [];
    for (let k = top; k <= bottom; k += 1) {
      const row = after[k];
      r.styleRow(row, k);
      if (!row.initialized || !row.heightInitialized) fresh.push(row);
      row.initialize(false, true);
      rows.appendChild(row.getElement());
    }
    r.tableElement.replaceChildren(rows);
    for (const row of fresh) row.rendered();
    // Every row is of the table's one height: those built now are given that of a row
    // measured before (Tabulator's calcHeight reads each one's offsetHeight: a layout).
    const measured = shown.find((row) => row.heightInitialized && row.outerHeight > 0);
    if (measured) {
      for (const row of fresh) {
        row.height = table.options.rowHeight;
        row.heightStyled = `${row.height}px`;
        row.outerHeight = measured.outerHeight;
        row.setCellHeight();
      }
    } else r._quickNormalizeRowHeight(fresh);
  }
  if (after.length !== before.length) {
    const grown = (after.length - before.length) * r.vDomRowHeight;
    r.vDomBottomPad = Math.max(0, r.vDomBottomPad + grown);
    r.vDomScrollHeight += grown;
    r.tableElement.style.paddingBottom = `${r.vDomBottomPad}px`;
  }
  manager.dispatch("data-refreshed");
  return true;
}

/**
 * rows (plain objects) in the order the table's rows of their indexes were given last
 * (updateInPlace's row.order), those of new indexes after them; rows as they are when the
 * table is not sorted or was not updated in place. Sorted by the same column again, they
 * are then nearly in order already (a snapshot later, most rows keep their places), and
 * sorting them (presort) takes about one comparison a row instead of log2(rows).
 */
export function inPreviousOrder(table, rows, index) {
  const known = rowIndexes.get(table);
  if (!known || known.rows !== table.rowManager?.rows || !table.getSorters().length) return rows;
  const slots = new Array(known.rows.length);
  const added = [];
  for (const d of rows) {
    const at = known.byIndex.get(d[index])?.order;
    if (at !== undefined && at < slots.length && slots[at] === undefined) slots[at] = d;
    else added.push(d);
  }
  const out = [];
  for (let i = 0; i < slots.length; i += 1) if (slots[i] !== undefined) out.push(slots[i]);
  for (const d of added) out.push(d);
  return out;
}

// Values compared as the "number" and "string" sorters do (numbers; text in lower case,
// in the browser's collation). Close is enough: the table's own sort puts right whatever
// this leaves out of order, it only costs it more comparisons.
const collator = new Intl.Collator();
function compareValues(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  const x = a === null || a === undefined ? "" : String(a).toLowerCase();
  const y = b === null || b === undefined ? "" : String(b).toLowerCase();
  return collator.compare(x, y);
}

/**
 * rows, sorted in place by the table's sorters (its last one first, as the table does).
 * given: the same rows in the order they were given (optional): rows that compare equal
 * are put in that order, as the table's stable sort of them in that order would leave
 * them (rows is then that order's permutation, e.g. inPreviousOrder's).
 */
export function presort(table, rows, given = null) {
  const sorters = table.getSorters();
  if (!sorters.length || rows.length < 2) return rows;
  const keys = sorters.map((s) => [s.field, s.dir === "desc" ? -1 : 1]).reverse();
  let at = null;
  if (given && given !== rows) {
    at = new Map();
    for (let i = 0; i < given.length; i += 1) if (!at.has(given[i])) at.set(given[i], i);
  }
  const tie = at ? (a, b) => (at.get(a) ?? 0) - (at.get(b) ?? 0) : () => 0;
  if (keys.length === 1) {
    const [[field, dir]] = keys;
    return rows.sort((a, b) => dir * compareValues(a[field], b[field]) || tie(a, b));
  }
  return rows.sort((a, b) => {
    for (const [field, dir] of keys) {
      const c = compareValues(a[field], b[field]);
      if (c !== 0) return c * dir;
    }
    return tie(a, b);
  });
}

const statusFormatter = (cell) => {
  const v = String(cell.getValue() ?? "");
  return dom.el("span", { className: `status-${v}` }, v);
};

export const peerFormatter = (cell) => {
  const id = String(cell.getValue() || "");
  return dom.el("span", { className: "peer-cell", title: id }, dom.el("code", {}, fmt.shortPeer(id)),
    dom.el("button", { className: "copy", type: "button", title: `copy ${id}`, dataset: { copy: id } }, dom.copyIcon()));
};

// Values shown as they are (the default "plaintext" formatter escapes, but builds HTML).
export const textFormatter = (cell) => dom.text(cell.getValue());
export const codeFormatter = (cell) => dom.el("code", {}, cell.getValue());

export function copyOnClick(onCopied) {
  return (e) => {
    const button = e.target.closest?.(".copy");
    if (!button) return false;
    e.stopPropagation();
    fmt.copyText(button.dataset.copy).then((ok) => onCopied(ok, button.dataset.copy));
    return true;
  };
}

// Widths are set here rather than measured from the first data (which may be another node's).
// A traffic cell: cumulative bytes, and the current rate below it; sorts by bytes.
export const trafficCol = (title, field, rateField) => ({
  title, field, hozAlign: "right", sorter: "number", minWidth: 100, variableHeight: true,
  formatter: (c) => {
    const r = c.getRow().getData();
    return dom.el("span", {}, fmt.bytes(r[field]), dom.el("br"), dom.el("span", { className: "rate" }, fmt.rate(r[rateField])));
  },
  tooltip: (e, c) => dom.tip(`${c.getValue()} bytes; now ${c.getRow().getData()[rateField]} bytes per second`),
});
// A text column whose tooltip is the whole value (the cell may cut it).
export const textCol = (title, field, minWidth) => ({
  title, field, minWidth, formatter: textFormatter, tooltip: (e, c) => dom.tip(c.getValue()),
});

/**
 * Connections: one row per connection (closed ones greyed until they age out).
 * placeholder() is the text shown when no row is (asked each time the table is empty).
 */
export function connectionsTable(el, { onSelect, onCopied, placeholder }) {
  const copy = copyOnClick(onCopied);
  const t = build(el, {
    index: "id",
    inPlace: true,
    twoLineRows: true,
    deps: { src: "dst", in: "bwIn", out: "bwOut" },
    maxHeight: "56vh",
    layout: "fitColumns",
    placeholder: () => dom.el("div", { className: "tabulator-placeholder-contents" }, placeholder()),
    initialSort: [{ column: "age", dir: "asc" }],
    columns: [
      { title: "Peer", field: "peer", formatter: peerFormatter, minWidth: 150, cellClick: (e) => copy(e) },
      { title: "Status", field: "status", formatter: statusFormatter, minWidth: 82 },
      { title: "Endpoints", field: "src", formatter: (c) => {
        const r = c.getRow().getData();
        return dom.el("span", {}, dom.el("code", {}, r.src), dom.el("br"), dom.el("code", {}, `→ ${r.dst}`));
      }, tooltip: (e, c) => dom.tip(`${c.getRow().getData().src} → ${c.getRow().getData().dst}`),
      variableHeight: true, minWidth: 200, widthGrow: 2, headerSort: false },
      { title: "Agent", field: "agent", minWidth: 120, formatter: (c) => (c.getValue() ? dom.text(c.getValue())
        : dom.el("span", { className: "muted" }, "not identified")),
      tooltip: (e, c) => dom.el("div", { className: "tip-lines" }, peerInfoLines(c.getRow().getData().peerInfo)) },
      textCol("Transport", "transport", 112),
      textCol("Muxer", "mux", 100),
      textCol("Security", "sec", 108),
      { title: "Role", field: "role", minWidth: 82, formatter: (c) => (c.getValue() === "INITIATOR" ? "outbound" : "inbound") },
      { title: "Age", field: "age", hozAlign: "right", sorter: "number", minWidth: 74, formatter: (c) => fmt.duration(c.getValue()) },
      { title: "Latency", field: "lat", hozAlign: "right", sorter: "number", minWidth: 92, formatter: (c) => fmt.latency(c.getValue()) },
      trafficCol("In", "in", "bwIn"),
      trafficCol("Out", "out", "bwOut"),
      { title: "Streams", field: "nstreams", hozAlign: "right", sorter: "number", minWidth: 78, formatter: textFormatter },
    ],
    rowFormatter: (row) => {
      const d = row.getData();
      row.getElement().classList.toggle("closed-row", d.status === "CLOSED");
      row.getElement().classList.toggle("selected-row", d.id === t.selected);
    },
  });
  t.selected = null;
  t.table.on("rowClick", (e, row) => {
    if (e.target.closest?.(".copy")) return;
    onSelect(row.getData().id);
  });
  return t;
}

// Rows of the Streams tables per page (the server's page: streams_api.py).
export const STREAMS_PAGE_SIZE = 100;

/**
 * Streams: of one connection, or of all (withPeer adds the connection's peer), a page at
 * a time from the dashboard (GET /api/streams, streams_api.py: sorted, filtered and paged
 * there; the page never holds a snapshot's 50,000 streams). query() says what to show:
 * {ts, conn?, find?, status?} (the moment shown; a connection's streams only; the
 * protocol contains find; the status is status), or null for nothing. onPage(answer) is
 * told each page shown (its last_row, total).
 *
 * A click on a column's title, a page button or reload() (a filter changed: page 1) is
 * Tabulator's remote load. refresh() (a new snapshot, a moment scrubbed to) fetches the
 * page shown again, same page, sort and filter, and updates its rows in place
 * (updateInPlace: the scroll, hovered and selected cells kept); it counts in allSet().
 * Latest wins: an answer to a request older than the last made, or for a moment no
 * longer asked (query().ts), is dropped. t.table.shownTs: the moment of the rows shown.
 * onQuery(text) is told the query of every request (its parameters but ts); a page told
 * to the dashboard comes with each snapshot (t.offer), and refresh() draws it instead of
 * asking when it is of the moment and the query shown (t.lastRefresh: {fetch, update} ms
 * of the last refresh, pushed: whether no request was made, how: "in window", "in place"
 * or "replaced": how its rows were updated).
 */
export function streamsTable(el, { withPeer, onCopied, height, query, onPage = () => {}, onQuery = () => {} }) {
  const copy = copyOnClick(onCopied);
  const columns = [
    { title: "Protocol", field: "proto", minWidth: 220, widthGrow: 3, tooltip: (e, c) => dom.tip(c.getValue()),
      formatter: (c) => dom.el("code", {}, c.getValue() || "(negotiating)") },
    { title: "Role", field: "role", minWidth: 82, formatter: (c) => (c.getValue() === "INITIATOR" ? "outbound" : "inbound") },
    { title: "Status", field: "status", minWidth: 82, formatter: statusFormatter },
    { title: "Age", field: "age", hozAlign: "right", sorter: "number", minWidth: 74, formatter: (c) => fmt.duration(c.getValue()) },
    trafficCol("In", "in", "bwIn"),
    trafficCol("Out", "out", "bwOut"),
  ];
  if (withPeer) {
    columns.unshift({ title: "Peer", field: "peer", formatter: peerFormatter, minWidth: 150, cellClick: (e) => copy(e) });
  }
  let asked = 0; // the number of the last request made (Tabulator's loads and refreshes)
  let pushed = null; // the last page the dashboard sent with a snapshot: {q, answer}
  const empty = { ts: null, page: 1, last_page: 1, last_row: 0, total: 0, data: [] };
  // The query text (GET /api/streams's parameters but ts) of `params` ({page, size, sort:
  // [{field, dir}]}) and q (query()'s); the same text is told the dashboard (onQuery).
  function queryText(params, q) {
    const sorter = (params.sort || [])[0];
    const search = new URLSearchParams({ page: String(params.page || 1),
      size: String(params.size || STREAMS_PAGE_SIZE), sort: sorter ? sorter.field : "age",
      dir: sorter && sorter.dir === "desc" ? "desc" : "asc" });
    if (q.find) search.set("find", q.find);
    if (q.status) search.set("status", q.status);
    if (q.conn !== undefined && q.conn !== null) search.set("conn", q.conn);
    return search.toString();
  }
  // The answer to `params` for the moment query() says, or null when a later request was
  // made or the moment is no longer asked. With offer: the page the dashboard sent with the
  // snapshot, when it answers exactly this query for this moment (no request made then).
  async function fetchPage(params, offer = null) {
    const number = ++asked;
    const q = query();
    if (!q) return empty;
    const text = queryText(params, q);
    onQuery(text);
    if (offer && offer.q === text && offer.answer && offer.answer.ts === q.ts) return offer.answer;
    let answer;
    try {
      answer = await getJson(`/api/streams?ts=${encodeURIComponent(String(q.ts))}&${text}`);
    } catch (err) {
      if (number !== asked) return null;
      throw err;
    }
    const now = query();
    if (number !== asked || !now || now.ts !== q.ts || now.conn !== q.conn) return null;
    return answer;
  }
  const t = build(el, {
    index: "key",
    twoLineRows: true,
    maxHeight: height || "60vh",
    layout: "fitColumns",
    placeholder: "no streams",
    initialSort: [{ column: "age", dir: "asc" }],
    pagination: true,
    paginationMode: "remote",
    paginationSize: STREAMS_PAGE_SIZE,
    paginationCounter: "rows",
    sortMode: "remote",
    filterMode: "remote",
    ajaxURL: "/api/streams",
    // Tabulator's own loads: a title clicked, a page chosen, reload(). A dropped answer
    // leaves the rows as they are (Tabulator drops it too: a later load was asked).
    ajaxRequestFunc: async (url, config, params) => {
      const answer = await fetchPage(params);
      if (!answer) return { last_page: t.table.getPageMax() || 1, data: t.table.getData() };
      // A page past the last is answered as the last (the moment has fewer streams than
      // when it was picked): Tabulator's load keeps the page it asked, so say which it is.
      const pager = t.table.modules.page;
      if (pager && answer.page !== pager.page) pager.page = answer.page;
      t.table.shownTs = answer.ts;
      onPage(answer);
      return answer;
    },
    columns,
    rowFormatter: (row) => row.getElement().classList.toggle("closed-row", row.getData().status === "CLOSED"),
  });
  const deps = { in: "bwIn", out: "bwOut" };
  let fixedHeight = false;
  async function refreshNow() {
    await t.ready;
    const table = t.table;
    const sorters = table.getSorters().map((s) => ({ field: s.field, dir: s.dir }));
    const offer = pushed;
    pushed = null; // drawn once at most
    const began = performance.now();
    const answer = await fetchPage({ page: table.getPage() || 1, size: STREAMS_PAGE_SIZE, sort: sorters }, offer);
    if (!answer) return;
    const fetched = performance.now();
    const inPlace = updateInPlace(table, answer.data, "key", deps);
    if (!inPlace) await table.replaceData(answer.data);
    // Once a page overflows the table's maxHeight, its height is fixed there for good (as
    // build's set() fixes a large table's): sized to its content, every refresh was
    // Tabulator's whole redraw in position (refreshInWindow holds for a fixed height only).
    const holder = table.rowManager?.element;
    if (!fixedHeight && holder && holder.scrollHeight > holder.clientHeight + 1) {
      fixedHeight = true;
      table.setHeight(height || "60vh");
    }
    // The pager says the answer's page, last page and row count (the server clamps a page
    // past the last: one picked while this refresh was on its way). Tabulator's public
    // setMaxPage would load again, and nothing public sets the row count of a remote
    // table: its page module's fields, as its own remote load sets them (Tabulator 6.5).
    const pager = table.modules.page;
    if (pager) {
      pager.max = answer.last_page;
      pager.page = answer.page;
      pager.remoteRowCountEstimate = answer.last_row;
      pager._setPageButtons();
      pager._setPageCounter(answer.last_row, 0, 0);
    } else if (answer.last_page !== table.getPageMax()) table.setMaxPage(answer.last_page);
    table.shownTs = answer.ts;
    onPage(answer);
    t.lastRefresh = { fetch: fetched - began, update: performance.now() - fetched, pushed: answer === offer?.answer,
      how: inPlace ? (table.inWindow ? "in window" : "in place") : "replaced" };
  }
  /** The dashboard's streams message ({q, answer}: app.py): the page of the snapshot it came
   *  with, drawn by the next refresh() instead of a request when it answers what is shown. */
  t.offer = (message) => { pushed = message; };
  /** Fetch the page shown again, for the moment query() says now (counted in allSet()). */
  t.refresh = () => track(refreshNow().catch(() => {}));
  /** Show page 1 of what query() says (a filter or the connection changed). */
  t.reload = () => track(t.ready.then(() => t.table.setPage(1)).catch(() => {}));
  return t;
}

/**
 * DHT buckets: peers grouped by common prefix length, with the DHT queries the page
 * holds for each (rows: {key, cpl, peer, status, age, qin, qout, last}).
 */
export function dhtTable(el, { onCopied }) {
  const copy = copyOnClick(onCopied);
  return build(el, {
    index: "key",
    maxHeight: "60vh",
    layout: "fitColumns",
    placeholder: "no DHT peers",
    groupBy: "cpl",
    groupHeader: (value, count) => dom.el("span", {}, `common prefix length ${value} `,
      dom.el("span", { className: "muted" }, `(${count} peer${count === 1 ? "" : "s"})`)),
    columns: [
      { title: "Peer", field: "peer", formatter: peerFormatter, minWidth: 150, widthGrow: 2, cellClick: (e) => copy(e) },
      { title: "Status", field: "status", formatter: statusFormatter, minWidth: 90 },
      { title: "In bucket", field: "age", hozAlign: "right", sorter: "number", minWidth: 90, formatter: (c) => fmt.duration(c.getValue()) },
      { title: "Queries", headerTooltip: () => dom.tip("DHT queries from (in) and to (out) this peer, among the events kept"),
        columns: [
          { title: "in", field: "qin", hozAlign: "right", sorter: "number", minWidth: 56, formatter: textFormatter },
          { title: "out", field: "qout", hozAlign: "right", sorter: "number", minWidth: 60, formatter: textFormatter },
          textCol("last", "last", 160),
        ] },
    ],
  });
}

/** An event type's colored chip (its color from the palette, set as a style property). */
export function typeChip(name) {
  return dom.el("span", { className: "type-chip", style: { background: fmt.colorFor(name) } }, name);
}

/** Events: time, type chip, content; a click shows the event's JSON. */
export function eventsTable(el) {
  const expanded = new Set();
  const t = build(el, {
    index: "seq",
    inPlace: true,
    maxHeight: "62vh",
    layout: "fitColumns",
    placeholder: "no events",
    initialSort: [{ column: "seq", dir: "desc" }],
    columns: [
      { title: "#", field: "seq", sorter: "number", width: 70, hozAlign: "right", formatter: textFormatter },
      { title: "Time", field: "ts", sorter: "number", width: 120, formatter: (c) => fmt.clockMs(c.getValue()) },
      { title: "Type", field: "type", width: 190, formatter: (c) => typeChip(c.getValue()) },
      { title: "Content", field: "summary", headerSort: false, formatter: codeFormatter },
    ],
    rowFormatter: (row) => {
      const el = row.getElement();
      const old = el.querySelector("pre.event-json");
      if (old) old.remove();
      const data = row.getData();
      if (expanded.has(data.seq)) {
        const pre = document.createElement("pre");
        pre.className = "event-json";
        pre.textContent = JSON.stringify({ ts: data.ts, type: data.type, content: data.content }, null, 2);
        el.appendChild(pre);
      }
    },
  });
  t.table.on("rowClick", (e, row) => {
    const seq = row.getData().seq;
    if (expanded.has(seq)) expanded.delete(seq); else expanded.add(seq);
    row.reformat();
    row.normalizeHeight();
  });
  t.expanded = expanded;
  return t;
}
