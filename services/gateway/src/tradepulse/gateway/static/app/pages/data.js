// Data: the datasets, their coverage and largest gap on a time axis, and the upload form.
import { api, detach } from "../api.js";
import { timelineChart } from "../charts.js";
import { h, num, table, when } from "../dom.js";
import { clearErrors, showErrors } from "./jobs.js";

export async function dataPage(view, signal) {
  const coverage = await api("/api/v2/data/coverage", { signal });
  const chartEl = h("div", { class: "chart short", id: "coverage-chart" });
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
    h("section", { class: "panel" }, h("h2", {}, "Coverage (the line breaks at each dataset's largest gap)"), chartEl),
    h("section", { class: "panel" }, h("h2", {}, "Upload candles"), form));
  if (coverage.datasets.length) drawCoverage(chartEl, coverage.datasets);
}

function drawCoverage(el, datasets) {
  const marks = new Set();
  for (const d of datasets) {
    marks.add(d.first_ms / 1000).add(d.last_ms / 1000);
    if (d.largest_gap) marks.add(Date.parse(d.largest_gap.after) / 1000).add(Date.parse(d.largest_gap.next) / 1000);
  }
  const xs = [...marks].sort((a, b) => a - b);
  const rows = datasets.map((d, i) => {
    const gapFrom = d.largest_gap ? Date.parse(d.largest_gap.after) / 1000 : null;
    const gapTo = d.largest_gap ? Date.parse(d.largest_gap.next) / 1000 : null;
    return xs.map((t) => {
      if (t < d.first_ms / 1000 || t > d.last_ms / 1000) return null;
      if (gapFrom !== null && t > gapFrom && t < gapTo) return null;
      return i;
    });
  });
  // A gap is drawn as a break: a null between its two ends.
  timelineChart("coverage", el, xs, rows, datasets.map((d) => `${d.symbol} ${d.timeframe}`));
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
