// A configuration: metrics, lineage, gates, status history and changes; the equity curve with
// its drawdown and the candles with a chosen range of trades, from GET .../backtest; the
// trades, paged.
import { api, detach } from "../api.js";
import { candleChart, equityChart } from "../charts.js";
import { errorBox, h, kv, msTime, num, status, table, when } from "../dom.js";
import { drawLater, walkForwardPanel } from "./job.js";
import { clearErrors, showErrors } from "./jobs.js";

const PAGE = 25;
const NEXT = { DISCOVERY: "CANDIDATE", CANDIDATE: "PAPER", PAPER: "LIVE" };
const MAX_RANGE_TRADES = 20;

export async function configsPage(view, signal) {
  const page = await api("/api/v2/configs?limit=100", { signal });
  view.replaceChildren(h("h1", {}, "Configurations"), h("section", { class: "panel" },
    page.items.length ? table([
      { label: "configuration", cell: (c) => h("a", { href: `#/config/${c.config_id}` }, c.config_id.slice(0, 12)) },
      { label: "status", cell: (c) => status(c.status) },
      { label: "market", cell: (c) => `${c.exchange} ${c.symbol} ${c.timeframe}` },
      { label: "Sharpe", num: true, cell: (c) => num(c.metrics.sharpe_ratio) },
      { label: "net profit", num: true, cell: (c) => num(c.metrics.net_profit, 2) },
      { label: "trades", num: true, cell: (c) => num(c.metrics.total_trades) },
      { label: "DSR", num: true, cell: (c) => num(c.validation ? c.validation.dsr : null) },
      { label: "PBO", num: true, cell: (c) => num(c.validation && c.validation.pbo ? c.validation.pbo.pbo : null) },
      { label: "created", cell: (c) => when(c.created_at) },
    ], page.items) : h("p", { class: "muted" }, "No configurations yet."),
    h("p", { class: "muted small" }, `${page.total} configurations`)));
}

export async function configPage(view, signal, configId) {
  const config = await api(`/api/v2/configs/${configId}`, { signal });
  const equityEl = h("div", { class: "chart tall", id: "equity-chart" });
  const candlesEl = h("div", { class: "chart tall", id: "candles-chart" });
  const tradesEl = h("div", { id: "trades" }, h("p", { class: "muted" }, "Running the backtest…"));
  const rangeForm = h("form", { class: "filters", id: "trade-range" },
    h("label", {}, "From trade #", h("input", { name: "from", value: "1", size: 5 })),
    h("label", {}, "to trade #", h("input", { name: "to", value: "3", size: 5 })),
    h("button", { type: "submit" }, "Show"), h("span", { class: "muted small", id: "range-note" }));
  view.replaceChildren(
    h("h1", {}, "Configuration ", h("code", {}, configId), " ", status(config.status)),
    h("div", { class: "grid" },
      h("section", { class: "panel" }, h("h2", {}, "Metrics"), metricsPanel(config)),
      h("section", { class: "panel" }, h("h2", {}, "Lineage"), lineagePanel(config)),
      h("section", { class: "panel" }, h("h2", {}, "Status"), statusPanel(config, view, signal))),
    gatesPanel(config),
    walkForwardPanel(config),
    h("section", { class: "panel" }, h("h2", {}, "Equity and drawdown"), equityEl, h("p", { class: "muted small", id: "equity-note" })),
    h("section", { class: "panel" }, h("h2", {}, "Trades on the price"), rangeForm, candlesEl),
    h("section", { class: "panel" }, h("h2", {}, "Trades"), tradesEl));

  // The walk-forward section's charts (a configuration of a walk-forward job carries it).
  if (config.walk_forward) drawLater(view, { walk_forward: config.walk_forward, job_id: config.lineage.job_id }, signal);
  let backtest;
  try {
    backtest = await api(`/api/v2/configs/${configId}/backtest?points=2000`, { signal });
  } catch (error) {
    if (signal.aborted) return;
    tradesEl.replaceChildren(errorBox(error));
    return;
  }
  const arrived = performance.now();
  equityChart(equityEl, backtest.equity);
  // Drawn: the library paints on the next animation frame; the one after follows it.
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  window.__tp.equityRenderMs = performance.now() - arrived;
  view.querySelector("#equity-note").textContent =
    `${num(backtest.equity.bars)} bars shown as ${num(backtest.equity.time.length)} points (${backtest.equity.method}); ` +
    `fingerprint ${backtest.fingerprint.slice(0, 12)}… ${backtest.matches_config ? "matches the configuration" : "DIFFERS from the configuration"}; ` +
    `trainer ${num(backtest.compute_ms, 1)} ms; chart ${num(window.__tp.equityRenderMs, 1)} ms`;

  const trades = new TradePages(configId, backtest, signal);
  const showRange = async () => {
    const data = new FormData(rangeForm);
    let from = Math.max(1, parseInt(data.get("from"), 10) || 1);
    let to = Math.max(from, parseInt(data.get("to"), 10) || from);
    to = Math.min(to, from + MAX_RANGE_TRADES - 1, Math.max(backtest.trades_total, 1));
    from = Math.min(from, to);
    const chosen = await trades.range(from - 1, to);
    const note = view.querySelector("#range-note");
    if (!chosen.length) {
      note.textContent = "No trades in this configuration.";
      candlesEl.replaceChildren();
      return;
    }
    const tfMs = timeframeMs(config.timeframe);
    const start = Math.min(...chosen.map((t) => t.signal_time)) - 30 * tfMs;
    const end = Math.max(...chosen.map((t) => t.exit_time)) + 30 * tfMs;
    const q = new URLSearchParams({ exchange: config.exchange, symbol: config.symbol, timeframe: config.timeframe,
      start: new Date(start).toISOString(), end: new Date(end).toISOString() });
    const candles = await api(`/api/v2/data/candles?${q}`, { signal });
    note.textContent = `trades ${from}–${to} of ${backtest.trades_total}: ${candles.count} candles` +
      (candles.next_start ? " (first 5,000)" : "");
    candleChart(candlesEl, candles, chosen);
  };
  rangeForm.addEventListener("submit", (e) => { e.preventDefault(); showRange().catch((err) => candlesEl.replaceChildren(errorBox(err))); });
  await Promise.all([showRange(), renderTrades(tradesEl, trades, 0)]);
}

class TradePages {
  constructor(configId, first, signal) {
    this.configId = configId;
    this.total = first.trades_total;
    this.chunk = first.limit;
    this.chunks = new Map([[0, first.trades]]);
    this.signal = signal;
  }

  async chunkAt(index) {
    if (!this.chunks.has(index)) {
      const answer = await api(`/api/v2/configs/${this.configId}/backtest?points=10&offset=${index * this.chunk}&limit=${this.chunk}`, { signal: this.signal });
      this.chunks.set(index, answer.trades);
    }
    return this.chunks.get(index);
  }

  async range(from, to) {
    const out = [];
    for (let i = from; i < Math.min(to, this.total); i++) {
      const chunk = await this.chunkAt(Math.floor(i / this.chunk));
      out.push(chunk[i % this.chunk]);
    }
    return out;
  }
}

async function renderTrades(el, pages, page) {
  const rows = await pages.range(page * PAGE, (page + 1) * PAGE);
  const last = Math.max(0, Math.ceil(pages.total / PAGE) - 1);
  el.replaceChildren(
    table([
      { label: "#", num: true, cell: (t) => String(t.index) },
      { label: "side", cell: (t) => t.side },
      { label: "entry", cell: (t) => msTime(t.entry_time) },
      { label: "exit", cell: (t) => msTime(t.exit_time) },
      { label: "fill", num: true, cell: (t) => num(t.fill_price, 2) },
      { label: "stop", num: true, cell: (t) => num(t.stop_loss, 2) },
      { label: "target", num: true, cell: (t) => num(t.take_profit, 2) },
      { label: "exit price", num: true, cell: (t) => num(t.exit_price, 2) },
      { label: "reason", cell: (t) => t.exit_reason },
      { label: "qty", num: true, cell: (t) => num(t.qty, 6) },
      { label: "net P&L", num: true, cell: (t) => h("span", { class: t.net_pnl >= 0 ? "good" : "bad" }, num(t.net_pnl, 2)) },
      { label: "fees", num: true, cell: (t) => num(t.fees, 2) },
    ], rows.map((t, i) => ({ ...t, index: page * PAGE + i + 1, attrs: { dataset: { entry: String(t.entry_time) } } })), { id: "trades-table" }),
    h("div", { class: "pager" },
      h("button", { type: "button", id: "trades-prev", disabled: page === 0, onclick: () => detach(renderTrades(el, pages, page - 1)) }, "‹ previous"),
      h("span", { class: "muted", id: "trades-page" }, `page ${page + 1} of ${last + 1} (${pages.total} trades)`),
      h("button", { type: "button", id: "trades-next", disabled: page >= last, onclick: () => detach(renderTrades(el, pages, page + 1)) }, "next ›")));
}

function timeframeMs(tf) {
  const n = parseInt(tf, 10);
  return n * { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[tf.slice(-1)];
}

function metricsPanel(config) {
  const m = config.metrics;
  const v = config.validation;
  const percent = (x) => (x === null || x === undefined ? "–" : `${num(x, 2)} %`);
  return kv([
    ["Sharpe", num(m.sharpe_ratio)], ["Sortino", num(m.sortino_ratio)], ["Calmar", num(m.calmar_ratio)],
    ["net profit", num(m.net_profit, 2)], ["net profit %", percent(m.net_profit_pct)], ["CAGR", percent(m.cagr_pct)],
    ["max drawdown", percent(m.max_drawdown_pct)], ["trades (long / short)", `${num(m.total_trades)} (${num(m.long_trades)} / ${num(m.short_trades)})`],
    ["win rate", percent(m.win_rate)], ["profit factor", num(m.profit_factor)], ["expectancy", num(m.expectancy, 2)],
    ["exposure", percent(m.exposure_pct)], ["avg holding bars", num(m.avg_holding_bars, 1)],
    ["DSR", num(v ? v.dsr : null, 4)], ["PBO", num(v && v.pbo ? v.pbo.pbo : null, 3)],
  ]);
}

function lineagePanel(config) {
  const l = config.lineage;
  return h("div", {}, kv([
    ["job", h("a", { href: `#/job/${l.job_id}` }, l.job_id)], ["market", `${l.exchange} ${l.symbol} ${l.timeframe}`],
    ["optimizer", `${l.optimizer}, seed ${l.seed}`], ["sampler", `${l.sampler} ${l.sampler_version}`],
    ["objective", l.objective], ["regime", l.regime], ["window", `${when(l.first)} → ${when(l.last)}`],
    ["data hash", h("code", {}, l.content_hash.slice(0, 16))], ["code", l.code_version],
    ["fingerprint", h("code", {}, config.fingerprint.slice(0, 16))],
  ]), h("h3", {}, "Parameters"), kv(Object.entries(config.params).map(([k, v]) => [k, num(v, 4)])));
}

function statusPanel(config, view, signal) {
  const reason = h("input", { name: "reason", id: "status-reason", placeholder: "why (3–500 characters)" });
  const form = h("form", { id: "status-form" },
    h("label", { dataset: { field: "reason" } }, "Reason", reason,
      h("span", { class: "field-error", dataset: { errorFor: "reason" } })),
    h("span", { class: "field-error", dataset: { errorFor: "status" } }),
    h("p", { class: "form-error", id: "status-error", role: "alert" }),
    h("div", { class: "actions" },
      NEXT[config.status] ? h("button", { type: "submit", value: NEXT[config.status], class: "primary", id: "promote" }, `Promote to ${NEXT[config.status]}`) : null,
      config.status !== "RETIRED" ? h("button", { type: "submit", value: "RETIRED", class: "danger", id: "retire" }, "Retire") : null));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const target = event.submitter ? event.submitter.value : NEXT[config.status];
    try {
      await api(`/api/v2/configs/${config.config_id}/status`, { method: "POST", body: { status: target, reason: reason.value }, signal });
      detach(configPage(view, signal, config.config_id));
    } catch (error) {
      showErrors(form, error, "status-error");
    }
  });
  return h("div", {}, table([
    { label: "at", cell: (s) => when(s.at) },
    { label: "from", cell: (s) => s.from_status ?? "–" },
    { label: "to", cell: (s) => status(s.to_status) },
    { label: "actor", cell: (s) => s.actor },
    { label: "reason", cell: (s) => s.reason },
  ], config.history, { id: "status-history", class: "wrap" }), form);
}

function gatesPanel(config) {
  const gates = config.gates;
  if (!gates) return h("div", {});
  const rows = Array.isArray(gates) ? gates : Object.entries(gates).map(([name, g]) => ({ name, ...g }));
  return h("section", { class: "panel", id: "gates" }, h("h2", {}, "Lifecycle gates"), table([
    { label: "gate", cell: (g) => g.name ?? g.gate },
    { label: "value", num: true, cell: (g) => num(g.value, 4) },
    { label: "", cell: (g) => g.comparison ?? "" },
    { label: "threshold", num: true, cell: (g) => num(g.threshold, 4) },
    { label: "verdict", cell: (g) => {
      const ok = g.passed !== undefined ? g.passed : g.verdict === true || g.verdict === "pass";
      return h("span", { class: ok ? "good" : "bad" }, String(g.verdict ?? (ok ? "pass" : "fail")));
    } },
  ], rows));
}
