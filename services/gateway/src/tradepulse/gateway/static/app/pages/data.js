// Data: the datasets, their coverage and largest gap on a time axis, and the upload form.
import { api, detach } from "../api.js";
import { timelineChart } from "../charts.js";
import { h, num, table, when } from "../dom.js";
import { clearErrors, showErrors } from "./jobs.js";

export async function dataPage(view, signal) {
  const coverage = await api("/api/v2/data/coverage", { signal });
  const gaps = await Promise.all(coverage.datasets.map((d) => api(
    `/api/v2/data/gaps?${new URLSearchParams({ exchange: d.exchange, symbol: d.symbol, timeframe: d.timeframe })}`,
    { signal })));
  const chartEl = h("div", { id: "coverage-chart" });
  const form = uploadForm(view, signal);
  view.replaceChildren(
    h("h1", {}, "Data"),
    h("section", { class: "panel" }, h("h2", {}, "Datasets"), coverage.datasets.length ? table([
      { label: "dataset", cell: (d) => `${d.exchange} ${d.symbol} ${d.timeframe}` },
      { label: "rows", num: true, cell: (d) => num(d.rows) },
      { label: "expected", num: true, cell: (d) => num(d.expected_rows) },
      { label: "first", cell: (d) => when(d.first) },
      { label: "last", cell: (d) => when(d.last) },
      { label: "gaps", num: true, cell: (d) => num(d.gaps) },
      { label: "missing candles", num: true, cell: (d) => num(d.missing_candles) },
      { label: "largest gap", cell: (d) => (d.largest_gap ? `${when(d.largest_gap.after)} → ${when(d.largest_gap.next)} (${num(d.largest_gap.missing)})` : "–") },
      { label: "content hash", cell: (d) => h("code", {}, d.content_hash.slice(0, 12)) },
      { label: "updated", cell: (d) => when(d.updated_at) },
    ], coverage.datasets, { id: "datasets" }) : h("p", { class: "muted" }, "No datasets: upload candles below.")),
    h("section", { class: "panel" }, h("h2", {}, "Coverage (each line breaks at the dataset's gaps)"), chartEl,
      gapsTable(coverage.datasets, gaps)),
    h("section", { class: "panel" }, h("h2", {}, "Upload candles"), form));
  if (coverage.datasets.length) drawCoverage(chartEl, coverage.datasets, gaps);
}

function gapsTable(datasets, gaps) {
  const rows = gaps.flatMap((g, i) => g.gaps.map((gap) => ({ ...gap, dataset: datasets[i] })));
  if (!rows.length) return h("p", { class: "muted small" }, "No gaps.");
  return h("div", {}, h("h3", {}, "Gaps"), table([
    { label: "dataset", cell: (r) => `${r.dataset.exchange} ${r.dataset.symbol} ${r.dataset.timeframe}` },
    { label: "after", cell: (r) => when(r.after) },
    { label: "next", cell: (r) => when(r.next) },
    { label: "missing candles", num: true, cell: (r) => num(r.missing) },
  ], rows.slice(0, 50), { id: "gaps" }), rows.length > 50 ? h("p", { class: "muted small" }, `first 50 of ${rows.length}`) : null);
}

function drawCoverage(el, datasets, gaps) {
  // Each dataset is a line from its first to its last candle, with a null (a break) inside
  // each gap: the x values are every span's ends and every gap's ends and middles.
  const marks = new Set();
  datasets.forEach((d, i) => {
    marks.add(d.first_ms / 1000).add(d.last_ms / 1000);
    for (const g of gaps[i].gaps) marks.add(g.after_ms / 1000).add(g.next_ms / 1000).add((g.after_ms + g.next_ms) / 2000);
  });
  const xs = [...marks].sort((a, b) => a - b);
  const rows = datasets.map((d, i) => xs.map((t) => {
    if (t < d.first_ms / 1000 || t > d.last_ms / 1000) return null;
    if (gaps[i].gaps.some((g) => t > g.after_ms / 1000 && t < g.next_ms / 1000)) return null;
    return i;
  }));
  timelineChart("coverage", el, xs, rows, datasets.map((d) => `${d.exchange} ${d.symbol} ${d.timeframe}`));
}

function uploadForm(view, signal) {
  const slot = (name, label, input) => {
    input.name = name;
    input.id = `u-${name}`;
    return h("label", { dataset: { field: name } }, label, input, h("span", { class: "field-error", dataset: { errorFor: name } }));
  };
  const form = h("form", { id: "upload-form" },
    h("div", { class: "grid-form" },
      slot("file", "File (.csv, .csv.gz, .parquet)", h("input", { type: "file", accept: ".csv,.gz,.parquet,.pq" })),
      slot("exchange", "Exchange", h("input", { value: "binanceus" })),
      slot("symbol", "Symbol", h("input", { value: "BTC/USDT" })),
      slot("timeframe", "Timeframe", h("input", { value: "5m" })),
      slot("since", "Since (optional, ISO 8601)", h("input", {})),
      slot("until", "Until (optional)", h("input", {}))),
    h("p", { class: "form-error", id: "upload-error", role: "alert" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Upload"), h("span", { id: "upload-result", class: "muted" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const data = new FormData();
    for (const [k, v] of new FormData(form)) if (v instanceof File ? v.size || v.name : v) data.append(k, v);
    try {
      const answer = await api("/api/v2/data/upload", { method: "POST", form: data, signal });
      form.querySelector("#upload-result").textContent = answer.status === "succeeded"
        ? `imported: ${answer.rows_added} new of ${answer.rows_received} rows` : `import ${answer.status} (${answer.request_id})`;
      if (answer.status === "succeeded") detach(dataPage(view, signal));
    } catch (error) {
      showErrors(form, error, "upload-error");
    }
  });
  return form;
}
