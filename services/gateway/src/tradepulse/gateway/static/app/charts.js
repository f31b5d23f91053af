// Chart wrappers. TradingView's lightweight-charts draws what is on a time axis (equity with
// its drawdown, candles with trade markers and stop/target lines); uPlot draws the rest
// (trials by number, histograms, bars, scatter). Every chart drawn is registered in
// window.__tp.charts by name, so a test (or a curious user) can ask the library what it holds.
import {
  AreaSeries,
  CandlestickSeries,
  ColorType,
  LineSeries,
  LineStyle,
  createChart,
  createSeriesMarkers,
} from "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs";
import uPlot from "/static/vendor/uplot-1.6.32/uPlot.esm.js";

const COLORS = { text: "#d8dee6", grid: "#222a33", panel: "#171d24", accent: "#4ea1ff",
  good: "#26a69a", bad: "#ef5350", warn: "#f0b429", muted: "#8b96a3" };

window.__tp = window.__tp || { charts: {} };

function register(name, entry) {
  const old = window.__tp.charts[name];
  if (old && old.destroy) old.destroy();
  window.__tp.charts[name] = entry;
  return entry;
}

function tvChart(el) {
  return createChart(el, {
    autoSize: true,
    // The logo would inject a <style> element, which the page's CSP (style-src 'self')
    // refuses; the attribution with a link to tradingview.com is in the page's footer instead.
    layout: { background: { type: ColorType.Solid, color: COLORS.panel }, textColor: COLORS.text,
      attributionLogo: false },
    grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
    // A small minimum spacing lets fitContent show thousands of bars at once.
    timeScale: { timeVisible: true, secondsVisible: false, minBarSpacing: 0.05 },
    rightPriceScale: { borderColor: COLORS.grid },
  });
}

/** Equity (top pane) and drawdown in percent (bottom pane); `curve` is the API's equity.
 *  Registered as `name` (the configuration's backtest: "equity"). */
export function equityChart(el, curve, name = "equity") {
  const started = performance.now();
  const chart = tvChart(el);
  const equity = chart.addSeries(LineSeries, { color: COLORS.accent, lineWidth: 2, title: "equity" });
  const drawdown = chart.addSeries(
    AreaSeries,
    { lineColor: COLORS.bad, topColor: "rgba(239,83,80,0.05)", bottomColor: "rgba(239,83,80,0.4)",
      lineWidth: 1, title: "drawdown %", invertFilledArea: true },
    1,
  );
  const eq = new Array(curve.time.length);
  const dd = new Array(curve.time.length);
  for (let i = 0; i < curve.time.length; i++) {
    const time = curve.time[i] / 1000;
    eq[i] = { time, value: curve.equity[i] };
    dd[i] = { time, value: curve.drawdown[i] * 100 };
  }
  equity.setData(eq);
  drawdown.setData(dd);
  const panes = chart.panes();
  if (panes.length > 1) panes[1].setHeight(Math.round(el.clientHeight * 0.3));
  chart.timeScale().fitContent();
  const entry = register(name, { chart, equity, drawdown, destroy: () => chart.remove() });
  entry.renderMs = performance.now() - started;
  return entry;
}

/** Candles with each trade's entry and exit as markers and its stop and target as lines. */
export function candleChart(el, candles, trades) {
  const chart = tvChart(el);
  const series = chart.addSeries(CandlestickSeries, {
    upColor: COLORS.good, downColor: COLORS.bad, borderVisible: false,
    wickUpColor: COLORS.good, wickDownColor: COLORS.bad,
  });
  const data = candles.time.map((t, i) => ({
    time: t / 1000, open: candles.open[i], high: candles.high[i], low: candles.low[i], close: candles.close[i],
  }));
  series.setData(data);
  const markers = [];
  for (const t of trades) {
    const long = t.side === "long";
    markers.push({ time: t.entry_time / 1000, position: long ? "belowBar" : "aboveBar",
      color: long ? COLORS.good : COLORS.bad, shape: long ? "arrowUp" : "arrowDown",
      text: `${t.side} @ ${t.fill_price.toFixed(2)}` });
    markers.push({ time: t.exit_time / 1000, position: long ? "aboveBar" : "belowBar",
      color: COLORS.warn, shape: "circle", text: `${t.exit_reason} @ ${t.exit_price.toFixed(2)}` });
    series.createPriceLine({ price: t.stop_loss, color: COLORS.bad, lineWidth: 1,
      lineStyle: LineStyle.Dashed, axisLabelVisible: true, title: "stop" });
    series.createPriceLine({ price: t.take_profit, color: COLORS.good, lineWidth: 1,
      lineStyle: LineStyle.Dashed, axisLabelVisible: true, title: "target" });
  }
  markers.sort((a, b) => a.time - b.time);
  const markerApi = createSeriesMarkers(series, markers);
  chart.timeScale().fitContent();
  return register("candles", { chart, series, markers: markerApi, destroy: () => chart.remove() });
}

function uplotBase(el, height, extra) {
  return {
    width: Math.max(320, el.clientWidth || 600),
    height,
    legend: { show: true },
    axes: [
      { stroke: COLORS.muted, grid: { stroke: COLORS.grid } },
      { stroke: COLORS.muted, grid: { stroke: COLORS.grid } },
    ],
    ...extra,
  };
}

function mount(name, el, opts, data) {
  el.replaceChildren();
  const plot = new uPlot(opts, data, el);
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(320, el.clientWidth), height: opts.height }));
  resize.observe(el);
  return register(name, { plot, data, destroy: () => { resize.disconnect(); plot.destroy(); } });
}

/** Objective per trial (points) and best so far (a step line), by trial number. */
export function historyChart(el, numbers, values, best, objective) {
  return mount("history", el, uplotBase(el, 300, {
    scales: { x: { time: false } },
    series: [
      { label: "trial" },
      { label: objective, stroke: COLORS.accent, paths: () => null,
        points: { show: true, size: 4, fill: COLORS.accent, stroke: COLORS.accent } },
      { label: "best so far", stroke: COLORS.good, width: 2, paths: uPlot.paths.stepped({ align: 1 }),
        points: { show: false } },
    ],
  }), [numbers, values, best]);
}

/** Vertical bars at x = 0..n-1, labelled by `labels` (importances, histogram bins). */
export function barChart(name, el, labels, values, label, color = COLORS.accent, height = 240) {
  const xs = labels.map((_, i) => i);
  return mount(name, el, uplotBase(el, height, {
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
    axes: [
      { stroke: COLORS.muted, grid: { show: false }, splits: () => xs,
        values: (_, splits) => splits.map((i) => labels[i] ?? ""), rotate: labels.length > 12 ? -45 : 0 },
      { stroke: COLORS.muted, grid: { stroke: COLORS.grid } },
    ],
    series: [
      { label: "" },
      { label, stroke: color, fill: color + "99", paths: uPlot.paths.bars({ size: [0.8, 60] }),
        points: { show: false } },
    ],
  }), [xs, values]);
}

/** Two series of bars side by side at x = 0..n-1 (left and right of each label). */
export function groupedBarChart(name, el, labels, groups, height = 240) {
  const xs = labels.map((_, i) => i);
  return mount(name, el, uplotBase(el, height, {
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
    axes: [
      { stroke: COLORS.muted, grid: { show: false }, splits: () => xs,
        values: (_, splits) => splits.map((i) => labels[i] ?? "") },
      { stroke: COLORS.muted, grid: { stroke: COLORS.grid } },
    ],
    series: [
      { label: "" },
      ...groups.map((g, i) => ({ label: g.label, stroke: g.color, fill: g.color + "99",
        paths: uPlot.paths.bars({ size: [0.4, 40], align: i === 0 ? -1 : 1 }), points: { show: false } })),
    ],
  }), [xs, ...groups.map((g) => g.values)]);
}

/** Points (x, y) and, when given, a fitted line y = intercept + slope x over their range
 *  (x only, with ys all null: the line alone). */
export function scatterChart(name, el, xs, ys, fit, xLabel, yLabel) {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
  const x = order.map((i) => xs[i]);
  const y = order.map((i) => ys[i]);
  const series = [
    { label: xLabel },
    { label: yLabel, stroke: COLORS.accent, paths: () => null,
      points: { show: true, size: 5, fill: COLORS.accent + "aa", stroke: COLORS.accent } },
  ];
  const data = [x, y];
  if (fit && fit.slope !== null && fit.intercept !== null) {
    series.push({ label: "fit", stroke: COLORS.warn, width: 2, points: { show: false } });
    data.push(x.map((v) => fit.intercept + fit.slope * v));
  }
  return mount(name, el, uplotBase(el, 260, { scales: { x: { time: false } }, series }), data);
}

/** Lines on a time axis (seconds), e.g. coverage spans with nulls at the gaps. */
export function timelineChart(name, el, xs, rows, labels) {
  const palette = [COLORS.accent, COLORS.good, COLORS.warn, COLORS.bad, "#b388ff", "#4dd0e1"];
  return mount(name, el, uplotBase(el, 60 + 36 * Math.max(rows.length, 1), {
    scales: { y: { range: [-0.5, rows.length - 0.5] } },
    axes: [
      { stroke: COLORS.muted, grid: { stroke: COLORS.grid } },
      { stroke: COLORS.muted, grid: { show: false }, splits: () => rows.map((_, i) => i),
        values: (_, s) => s.map((i) => labels[i] ?? ""), size: 200 },
    ],
    series: [{ label: "time" }, ...rows.map((_, i) => ({
      label: labels[i], stroke: palette[i % palette.length], width: 10, spanGaps: false,
      points: { show: false } }))],
  }), [xs, ...rows]);
}
