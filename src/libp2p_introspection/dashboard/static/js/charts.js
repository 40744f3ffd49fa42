// uPlot time-series charts. x values are seconds since the epoch (uPlot's time scale).
//
// The time axis labels are single lines in local time ("14:03:07", "14:03",
// "06-15 14:03"), in whole-second steps, spaced by the width of the widest
// label plus a gap: however narrow the chart, they never overlap.

/* global uPlot */

const HEIGHT = 240;
const AXIS_FONT = "12px system-ui, -apple-system, \"Segoe UI\", Roboto, \"DejaVu Sans\", sans-serif";
const LABEL_GAP_PX = 18;
// Steps between time ticks, seconds.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400, 172800, 604800];

const pad = (n) => String(n).padStart(2, "0");

/** The label of the tick at t (seconds since the epoch), for ticks `step` seconds apart. */
export function timeLabel(t, step) {
  const d = new Date(t * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (step < 60) return `${hm}:${pad(d.getSeconds())}`;
  if (step < 86400) return hm;
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

let measurer = null;
function textWidth(text) {
  measurer ??= document.createElement("canvas").getContext("2d");
  measurer.font = AXIS_FONT;
  return measurer.measureText(text).width;
}

// Room for the widest label a span of that length can need ("06-15 14:03" past a day).
function tickSpace(u, axisIdx, min, max) {
  const sample = max - min > 86400 * 2 ? "00-00 00:00" : "00:00:00";
  return Math.ceil(textWidth(sample)) + LABEL_GAP_PX;
}

/**
 * A line chart in el. series: [{label, color, dash?}]; yFormat formats axis and
 * legend values. Returns {plot, set(xs, ...ys), resize(), destroy()}.
 */
export function lineChart(el, series, yFormat) {
  const width = () => Math.max(300, el.clientWidth - 14);
  const plot = new uPlot(
    {
      width: width(),
      height: HEIGHT,
      scales: { x: { time: true } },
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { value: (u, v) => (v == null ? "—" : timeLabel(v, 1)) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          dash: s.dash,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : yFormat(v)),
        })),
      ],
      axes: [
        { font: AXIS_FONT, space: tickSpace, incrs: TIME_STEPS,
          values: (u, splits, axisIdx, space, step) => splits.map((v) => timeLabel(v, step)) },
        { size: 86, values: (u, vals) => vals.map((v) => yFormat(v)) },
      ],
    },
    [[], ...series.map(() => [])],
    el,
  );
  let lastWidth = width();
  return {
    plot,
    set(xs, ...ys) {
      plot.setData([xs, ...ys]);
    },
    destroy() {
      plot.destroy();
    },
    resize() {
      const w = width();
      if (w !== lastWidth && el.offsetParent !== null) {
        lastWidth = w;
        plot.setSize({ width: w, height: HEIGHT });
      }
    },
  };
}
