// A job: live progress, the optimization history, parameter importances, the validation
// report (DSR, PBO with its logit histogram and degradation scatter) and, for a walk-forward
// job, its folds on a time axis with in-sample and out-of-sample Sharpe, the stitched record
// and its equity (re-run by a trainer: GET .../walk-forward/equity).
import { allPages, api, detach, stream } from "../api.js";
import { barChart, equityChart, groupedBarChart, historyChart, scatterChart, timelineChart } from "../charts.js";
import { errorBox, h, kv, msTime, num, status, table, when } from "../dom.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const LOGIT_EDGES = Array.from({ length: 24 }, (_, i) => -6 + i * 0.5);

export async function jobPage(view, signal, jobId) {
  const job = await api(`/api/v2/training/job/${jobId}`, { signal });
  const bar = h("progress", { id: "job-progress", max: 100, value: job.progress });
  const pctLabel = h("span", { id: "job-pct" }, `${job.progress.toFixed(1)} %`);
  const state = h("span", { id: "job-status" }, status(job.status));
  const trials = h("span", { id: "job-trials" }, `${job.trials_done} / ${job.n_iterations}`);
  const head = h("section", { class: "panel" },
    h("div", { class: "actions" }, state, bar, pctLabel, h("span", { class: "muted" }, "trials"), trials,
      job.config_id ? h("a", { href: `#/config/${job.config_id}`, id: "job-config" }, "configuration →") : null),
    job.error ? h("p", { class: "bad" }, job.error) : null);
  const history = h("div", { class: "chart", id: "history-chart" });
  const body = h("div", {});
  view.replaceChildren(
    h("h1", {}, "Job ", h("code", {}, jobId)), head,
    h("div", { class: "grid" },
      h("section", { class: "panel" }, h("h2", {}, "Request"), requestPanel(job)),
      h("section", { class: "panel" }, h("h2", {}, "Best"), bestPanel(job))),
    h("section", { class: "panel" }, h("h2", {}, "Optimization history"), history),
    body);

  const render = async (current) => {
    await drawHistory(history, jobId, current, signal);
    body.replaceChildren(
      importancesPanel(current),
      validationPanel(current),
      walkForwardPanel(current),
    );
    drawLater(body, current, signal);
  };
  await render(job);
  if (!TERMINAL.has(job.status)) {
    stream(`/api/v2/training/job/${jobId}/events`, (name, data) => {
      if (name === "progress") {
        if (data.progress >= Number(bar.value)) bar.value = data.progress;
        pctLabel.textContent = `${Number(bar.value).toFixed(1)} %`;
        trials.textContent = `${data.trials_done} / ${data.n_iterations}`;
        state.replaceChildren(status(data.status));
      }
      if (TERMINAL.has(name)) detach(jobPage(view, signal, jobId));
    }, signal).catch(() => {});
  }
}

function requestPanel(job) {
  return kv([
    ["market", `${job.exchange} ${job.symbol} ${job.timeframe}`],
    ["strategy", job.strategy], ["regime", job.regime], ["optimizer", `${job.optimizer} (${job.sampler ?? "–"})`],
    ["objective", job.objective], ["seed", String(job.seed)], ["min trades", String(job.min_trades)],
    ["window", job.lookback_candles ? `last ${num(job.lookback_candles)} candles` : `${when(job.start)} → ${when(job.end) }`],
    ["batch size", num(job.batch_size)], ["created", when(job.created_at)],
    ["duration", job.duration_s === null ? "–" : `${num(job.duration_s, 1)} s`],
  ]);
}

function bestPanel(job) {
  if (!job.best) return h("p", { class: "muted" }, "No best trial yet.");
  const m = job.best.metrics || {};
  return h("div", {},
    kv([["trial", String(job.best.trial)], [job.objective, num(job.best.value)],
      ["net profit", num(m.net_profit, 2)], ["trades", num(m.total_trades)], ["max drawdown", m.max_drawdown_pct === undefined || m.max_drawdown_pct === null ? "–" : `${num(m.max_drawdown_pct, 2)} %`]]),
    h("h3", {}, "Parameters"),
    kv(Object.entries(job.best.params || {}).map(([k, v]) => [k, num(v, 4)])));
}

async function drawHistory(el, jobId, job, signal) {
  const trials = await allPages(`/api/v2/training/job/${jobId}/trials`, "trials", 1000, signal);
  if (!trials.length) {
    el.replaceChildren(h("p", { class: "muted" }, "No trials yet."));
    return;
  }
  trials.sort((a, b) => a.number - b.number);
  const maximize = !["max_drawdown"].includes(job.objective);
  let best = null;
  const numbers = [], values = [], bests = [];
  for (const t of trials) {
    numbers.push(t.number);
    values.push(t.value);
    if (t.value !== null && (best === null || (maximize ? t.value > best : t.value < best))) best = t.value;
    bests.push(best);
  }
  el.dataset.trials = String(trials.length);
  historyChart(el, numbers, values, bests, job.objective);
}

function importancesPanel(job) {
  const imp = job.param_importances;
  const panel = h("section", { class: "panel" }, h("h2", {}, "Parameter importances"));
  if (!imp || !Object.keys(imp).length) {
    panel.append(h("p", { class: "muted" }, TERMINAL.has(job.status)
      ? "Not recorded for this job." : "Computed by the trainer (optuna's importance evaluator) when the job ends."));
    return panel;
  }
  panel.append(h("div", { class: "chart short", id: "importances-chart" }));
  return panel;
}

function validationPanel(job) {
  const v = job.validation;
  const panel = h("section", { class: "panel", id: "validation" }, h("h2", {}, "Validation"));
  if (!v) {
    panel.append(h("p", { class: "muted" }, "The report comes with the job's end."));
    return panel;
  }
  const dsrClass = v.dsr === null ? "" : v.dsr >= 0.95 ? "good" : "bad";
  panel.append(h("div", { class: "grid" },
    h("div", {}, h("h3", {}, "Deflated Sharpe"),
      kv([["DSR", h("span", { class: dsrClass, id: "dsr" }, num(v.dsr, 4))], ["PSR", num(v.psr, 4)],
        ["expected max Sharpe (annual)", h("span", { id: "expected-max-sharpe" }, num(v.expected_max_sharpe, 3))],
        ["expected max Sharpe per bar", num(v.expected_max_sharpe_per_bar, 5)],
        ["selected trial Sharpe per bar", v.selected ? num(v.selected.sharpe_per_bar, 5) : "–"],
        ["trials N", num(v.n_trials)], ["Sharpe variance V", num(v.sharpe_variance, 6)],
        ["returns T", v.selected ? num(v.selected.returns) : "–"],
        ["skew / kurtosis", v.selected ? `${num(v.selected.skew)} / ${num(v.selected.kurtosis)}` : "–"]])),
    v.pbo ? h("div", {}, h("h3", {}, "Probability of backtest overfitting"),
      kv([["PBO", h("span", { class: v.pbo.pbo <= 0.5 ? "good" : "bad", id: "pbo" }, num(v.pbo.pbo, 3))],
        ["P(out-of-sample loss)", num(v.pbo.prob_oos_loss, 3)], ["blocks S / splits", `${v.pbo.blocks} / ${v.pbo.sets}`],
        ["degradation slope", num(v.pbo.degradation.slope, 4)], ["degradation intercept", num(v.pbo.degradation.intercept, 4)],
        ["logit quantiles 5/25/50/75/95", Object.values(v.pbo.logit_quantiles).map((x) => num(x, 2)).join(" / ")]]))
      : h("p", { class: "muted" }, "No PBO: too few trials or returns.")));
  if (v.pbo) {
    panel.append(h("div", { class: "grid" },
      h("div", {}, h("h3", {}, "Logit of the in-sample winner's out-of-sample rank"), h("div", { class: "chart short", id: "logit-chart" })),
      h("div", {}, h("h3", {}, "Degradation: out-of-sample vs in-sample Sharpe"), h("div", { class: "chart short", id: "degradation-chart" }),
        h("p", { class: "muted small", id: "degradation-note" }, degradationNote(v.pbo)))));
  }
  return panel;
}

function degradationNote(pbo) {
  const points = pbo.degradation.points;
  if (!points) return "This report was stored without the splits' points: the line is OOS = intercept + slope · IS over the selected Sharpe's range.";
  const n = points.is_performance.length;
  const which = n === pbo.sets ? `all ${num(n)} splits` : `${num(n)} of the ${num(pbo.sets)} splits, evenly spaced`;
  return `Each point is a split's in-sample winner (${which}); the line OOS = intercept + slope · IS is fitted over every split.`;
}

export function walkForwardPanel(job) {
  const wf = job.walk_forward;
  if (!wf) return h("div", {});
  const folds = wf.fold_results || [];
  const panel = h("section", { class: "panel", id: "walk-forward" },
    h("h2", {}, `Walk-forward: ${wf.folds} folds, ${wf.mode}, in-sample/out-of-sample ${wf.is_oos_ratio}`),
    kv([["train / test bars", `${num(wf.train_bars)} / ${num(wf.test_bars)}`], ["WFE", num(wf.wfe, 3)],
      ["stitched OOS Sharpe", num(wf.oos && wf.oos.metrics ? wf.oos.metrics.sharpe_ratio : null)],
      ["stitched OOS net profit", num(wf.oos && wf.oos.metrics ? wf.oos.metrics.net_profit : null, 2)],
      ["stitched OOS PSR", num(wf.oos ? wf.oos.psr : null, 4)]]),
    h("h3", {}, "Folds on the time axis (train, then test)"), h("div", { class: "chart short", id: "folds-chart" }),
    h("h3", {}, "In-sample and out-of-sample Sharpe per fold"), h("div", { class: "chart short", id: "fold-sharpe-chart" }),
    h("h3", {}, "Stitched out-of-sample equity and drawdown"), h("div", { class: "chart", id: "wf-equity-chart" }),
    h("p", { class: "muted small", id: "wf-equity-note" }, "Re-running each fold's test…"),
    table([
      { label: "fold", cell: (f) => String(f.fold) },
      { label: "train (bars)", cell: (f) => spanText(f.train) },
      { label: "test (bars)", cell: (f) => spanText(f.test) },
      { label: "best trial", num: true, cell: (f) => num(f.best_trial) },
      { label: "IS Sharpe", num: true, cell: (f) => num(f.train_metrics ? f.train_metrics.sharpe_ratio : null) },
      { label: "OOS Sharpe", num: true, cell: (f) => num(f.test_metrics ? f.test_metrics.sharpe_ratio : null) },
      { label: "OOS net", num: true, cell: (f) => num(f.test_metrics ? f.test_metrics.net_profit : null, 2) },
      { label: "OOS trades", num: true, cell: (f) => num(f.test_trades) },
      { label: "capital in", num: true, cell: (f) => num(f.initial_capital, 2) },
      { label: "efficiency", num: true, cell: (f) => num(f.efficiency) },
    ], folds, { id: "fold-table", class: "wrap" }),
    wf.dispersion ? h("div", {}, h("h3", {}, "Parameter dispersion across folds"),
      kv(Object.entries(wf.dispersion).map(([k, v]) => [k, num(v, 4)]))) : null);
  return panel;
}

function spanText(span) {
  const a = spanMs(span, "first"), b = spanMs(span, "last");
  const times = Number.isFinite(a) && Number.isFinite(b) ? ` ${msTime(a)} → ${msTime(b)}` : "";
  return `${span.first_bar ?? "?"}–${span.last_bar ?? "?"}${times}`;
}

// The spans' open times, whichever name the walk-forward report gives them.
function spanMs(span, which) {
  const value = span[`${which}_ms`] ?? span[`${which}_time_ms`] ?? span[`${which}_time`] ?? span[`${which}_open`];
  return typeof value === "number" ? value : Date.parse(value);
}

/** The charts of the panels above, once they are in the page; `job.job_id` names the job
 *  whose stitched equity a walk-forward section draws (a configuration passes its job's). */
export function drawLater(root, job, signal) {
  const imp = job.param_importances;
  const impEl = root.querySelector("#importances-chart");
  if (impEl && imp) {
    const names = Object.keys(imp).sort((a, b) => imp[b] - imp[a]);
    barChart("importances", impEl, names, names.map((n) => imp[n]), "importance", "#26a69a", 220);
  }
  const v = job.validation;
  const logitEl = root.querySelector("#logit-chart");
  if (logitEl && v && v.pbo) {
    barChart("logit", logitEl, LOGIT_EDGES.map((e) => `${e}`), v.pbo.logit_histogram, "splits", "#4ea1ff", 220);
    const points = v.pbo.degradation.points;
    if (points) {
      scatterChart("degradation", root.querySelector("#degradation-chart"), points.is_performance,
        points.oos_performance, v.pbo.degradation, "IS Sharpe per bar", "OOS Sharpe per bar");
    } else {
      // A report stored without its points: the line over twice the selected per-bar Sharpe
      // either side of 0, the range the in-sample winners' Sharpes live in.
      const x0 = v.selected ? Math.max(Math.abs(v.selected.sharpe_per_bar) * 2, 1e-4) : 0.1;
      const xs = Array.from({ length: 21 }, (_, i) => -x0 + (i * x0) / 10);
      scatterChart("degradation", root.querySelector("#degradation-chart"), xs, xs.map(() => null),
        v.pbo.degradation, "IS Sharpe per bar", "OOS Sharpe per bar (no split points stored)");
    }
  }
  const wf = job.walk_forward;
  if (wf && wf.fold_results && wf.fold_results.length) {
    const folds = wf.fold_results;
    const times = [];
    for (const f of folds) for (const part of [f.train, f.test]) times.push(spanMs(part, "first") / 1000, spanMs(part, "last") / 1000);
    const xs = [...new Set(times)].filter((t) => !Number.isNaN(t)).sort((a, b) => a - b);
    const rows = [];
    const labels = [];
    for (const f of folds) {
      for (const [name, part] of [["train", f.train], ["test", f.test]]) {
        const a = spanMs(part, "first") / 1000, b = spanMs(part, "last") / 1000;
        rows.push(xs.map((t) => (t >= a && t <= b ? rows.length : null)));
        labels.push(`fold ${f.fold} ${name}`);
      }
    }
    timelineChart("folds", root.querySelector("#folds-chart"), xs, rows, labels);
    groupedBarChart("fold-sharpe", root.querySelector("#fold-sharpe-chart"), folds.map((f) => `fold ${f.fold}`), [
      { label: "IS Sharpe", values: folds.map((f) => (f.train_metrics ? f.train_metrics.sharpe_ratio : null)), color: "#4ea1ff" },
      { label: "OOS Sharpe", values: folds.map((f) => (f.test_metrics ? f.test_metrics.sharpe_ratio : null)), color: "#f0b429" },
    ], 200);
    const equityEl = root.querySelector("#wf-equity-chart");
    if (equityEl && job.job_id) detach(drawStitchedEquity(root, equityEl, job.job_id, signal));
  }
}

async function drawStitchedEquity(root, el, jobId, signal) {
  const note = root.querySelector("#wf-equity-note");
  let answer;
  try {
    answer = await api(`/api/v2/training/job/${jobId}/walk-forward/equity?points=2000`, { signal });
  } catch (error) {
    if (signal && signal.aborted) return;
    el.replaceChildren(errorBox(error));
    if (note) note.textContent = "";
    return;
  }
  equityChart(el, answer.equity, "wf-equity");
  el.dataset.points = String(answer.equity.time.length);
  if (note) {
    note.textContent = `${num(answer.equity.bars)} out-of-sample bars shown as ${num(answer.equity.time.length)} points ` +
      `(${answer.equity.method}); ${num(answer.trades)} test trades; fingerprint ${answer.fingerprint.slice(0, 12)}… ` +
      `${answer.matches_report ? "matches the walk-forward report" : "DIFFERS from the walk-forward report"}; ` +
      `trainer ${num(answer.compute_ms, 1)} ms`;
  }
}
