// uPlot time-series charts. x values are seconds since the epoch (uPlot's time scale).

/* global uPlot */

const HEIGHT = 240;

/**
 * A line chart in el. series: [{label, color, dash?}]; yFormat formats axis and
 * legend values. Returns {set(xs, ...ys), resize()}.
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
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          dash: s.dash,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : yFormat(v)),
        })),
      ],
      axes: [{}, { size: 86, values: (u, vals) => vals.map((v) => yFormat(v)) }],
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
    resize() {
      const w = width();
      if (w !== lastWidth && el.offsetParent !== null) {
        lastWidth = w;
        plot.setSize({ width: w, height: HEIGHT });
      }
    },
  };
}
