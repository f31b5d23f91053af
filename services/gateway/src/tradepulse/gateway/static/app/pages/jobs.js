// Jobs: the live list (progress over server-sent events), filters, cancel, and the form that
// starts a job, an ensemble or a walk-forward job, with the API's 422 reasons by each field.
import { ApiError, api, detach, stream } from "../api.js";
import { errorBox, h, num, status, when } from "../dom.js";

const LIVE = new Set(["queued", "running"]);
const MAX_STREAMS = 8;

export async function jobsPage(view, signal) {
  const meta = await api("/api/v2/strategies", { signal });
  const filters = h("form", { class: "filters", id: "job-filters" },
    h("label", {}, "Status", h("select", { name: "status" },
      h("option", { value: "" }, "any"), ["queued", "running", "completed", "failed", "cancelled"].map((s) => h("option", { value: s }, s)))),
    h("label", {}, "Symbol", h("input", { name: "symbol", placeholder: "BTC/USDT", size: 10 })),
    h("label", {}, "Strategy", h("select", { name: "strategy" },
      h("option", { value: "" }, "any"), meta.strategies.map((s) => h("option", { value: s.name }, s.name)))),
    h("button", { type: "submit" }, "Filter"));
  const list = h("div", { id: "jobs-list" }, h("p", { class: "muted" }, "Loading jobs…"));
  view.replaceChildren(
    h("h1", {}, "Jobs"),
    h("section", { class: "panel" }, h("h2", {}, "Start"), startForm(meta, signal, refresh)),
    h("section", { class: "panel" }, h("h2", {}, "Jobs"), filters, list),
  );
  const streams = new Map();
  signal.addEventListener("abort", () => streams.forEach((c) => c.abort()));

  async function refresh() {
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
    let page;
    try {
      page = await api(`/api/v2/training/jobs?${q}`, { signal });
    } catch (error) {
      if (!signal.aborted) list.replaceChildren(errorBox(error));
      return;
    }
    list.replaceChildren(jobsTable(page, signal, refresh), h("p", { class: "muted small" }, `${page.total} jobs`));
    for (const job of page.jobs) {
      if (!LIVE.has(job.status) || streams.has(job.job_id) || streams.size >= MAX_STREAMS) continue;
      follow(job.job_id);
    }
  }

  function follow(jobId) {
    const controller = new AbortController();
    streams.set(jobId, controller);
    stream(`/api/v2/training/job/${jobId}/events`, (name, data) => {
      const row = document.querySelector(`tr[data-job="${jobId}"]`);
      if (!row) return;
      if (name === "progress") updateProgress(row, data.progress, data.trials_done, data.n_iterations, data.status);
      if (name === "best" && data.value !== undefined) row.querySelector(".best").textContent = num(data.value);
      if (["completed", "failed", "cancelled"].includes(name)) {
        updateProgress(row, data.progress, data.trials_done, data.n_iterations, name);
        streams.delete(jobId);
        detach(refresh());
      }
    }, controller.signal).catch(() => {}).finally(() => streams.delete(jobId));
  }

  filters.addEventListener("submit", (event) => { event.preventDefault(); detach(refresh()); });
  await refresh();
  // Jobs started elsewhere (the CLI, another tab) appear without a reload.
  const timer = setInterval(() => detach(refresh()), 10000);
  signal.addEventListener("abort", () => clearInterval(timer));
}

function updateProgress(row, progress, done, total, state) {
  const bar = row.querySelector("progress");
  if (progress !== undefined && progress >= Number(bar.value)) bar.value = progress;
  row.querySelector(".pct").textContent = `${Number(bar.value).toFixed(1)} %`;
  if (done !== undefined) row.querySelector(".trials").textContent = `${done} / ${total}`;
  if (state) row.querySelector(".state").replaceChildren(status(state));
}

function jobsTable(page, signal, refresh) {
  if (!page.jobs.length) return h("p", { class: "muted" }, "No jobs yet: start one above.");
  return h("table", { id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["job", "status", "progress", "market", "optimizer", "trials", "best", "configuration", "created", ""]
      .map((c) => h("th", {}, c)))),
    h("tbody", {}, page.jobs.map((job) => h("tr", { dataset: { job: job.job_id } },
      h("td", {}, h("a", { href: `#/job/${job.job_id}` }, job.job_id.slice(0, 12))),
      h("td", { class: "state" }, status(job.status)),
      h("td", { class: "bar-cell" }, h("progress", { max: 100, value: job.progress }), " ", h("span", { class: "pct small" }, `${job.progress.toFixed(1)} %`)),
      h("td", {}, `${job.exchange} ${job.symbol} ${job.timeframe}`),
      h("td", {}, job.optimizer),
      h("td", { class: "trials num" }, `${job.trials_done} / ${job.n_iterations}`),
      h("td", { class: "best num" }, num(job.best ? job.best.value : null)),
      h("td", {}, job.config_id ? h("a", { href: `#/config/${job.config_id}`, class: "config-link" }, job.config_id.slice(0, 12)) : "–"),
      h("td", { class: "small muted" }, when(job.created_at)),
      h("td", {}, LIVE.has(job.status) ? h("button", { type: "button", class: "danger", onclick: async (e) => {
        e.target.disabled = true;
        try { await api(`/api/v2/training/job/${job.job_id}/cancel`, { method: "POST", signal }); }
        catch (error) { alert(error.message); }
        detach(refresh());
      } }, "Cancel") : ""),
    ))));
}

// The form -----------------------------------------------------------------------------------

function field(name, label, input, hint) {
  input.name = name;
  input.id = `f-${name.replace(".", "-")}`;
  return h("label", { dataset: { field: name } }, label, input,
    hint ? h("span", { class: "muted small" }, hint) : null,
    h("span", { class: "field-error", dataset: { errorFor: name }, role: "alert" }));
}

const choice = (values, selected) => h("select", {}, values.map((v) => h("option", { value: v, selected: v === selected }, v)));
const text = (value, placeholder) => h("input", { value: value ?? "", placeholder: placeholder ?? "" });

const SETTINGS = ["initial_capital", "fee_rate", "slippage", "risk_per_trade", "max_leverage"];
const INTS = new Set(["n_iterations", "lookback_candles", "seed", "min_trades", "batch_size", "pbo_blocks", "n_seeds",
  "walk_forward.folds", "walk_forward.is_oos_ratio"]);
const FLOATS = new Set(["max_dispersion", ...SETTINGS.map((s) => `settings.${s}`)]);

function startForm(meta, signal, onStarted) {
  const kind = choice(["job", "ensemble", "walk-forward"], "job");
  kind.name = "kind";
  kind.id = "f-kind";
  const form = h("form", { id: "start-form", novalidate: true },
    h("div", { class: "grid-form" },
      h("label", {}, "Kind", kind),
      field("strategy", "Strategy", choice(meta.strategies.map((s) => s.name), "LIQUIDITY_SWEEP")),
      field("exchange", "Exchange", text("binanceus")),
      field("symbol", "Symbol", text("BTC/USDT")),
      field("timeframe", "Timeframe", text("5m")),
      field("regime", "Regime", choice(meta.regimes, "any")),
      field("optimizer", "Optimizer", choice(meta.optimizers, "random")),
      field("objective", "Objective", choice(meta.objectives, "sharpe_ratio")),
      field("n_iterations", "Trials (n_iterations)", text("200")),
      field("lookback_candles", "Lookback candles", text("5000"), "or start/end"),
      field("start", "Start (ISO 8601)", text("", "2024-01-01T00:00:00Z")),
      field("end", "End (ISO 8601)", text("")),
      field("seed", "Seed", text("42")),
      field("min_trades", "Min trades", text("1")),
      field("batch_size", "Batch size", text("", "auto")),
      field("pbo_blocks", "PBO blocks", text("16")),
    ),
    h("fieldset", {}, h("legend", {}, "Backtest settings"),
      h("div", { class: "grid-form" }, SETTINGS.map((s) => field(`settings.${s}`, s, text("", "default"))))),
    h("fieldset", { class: "kind-ensemble hidden" }, h("legend", {}, "Ensemble"),
      h("div", { class: "grid-form" },
        field("n_seeds", "Seeds (n_seeds from seed on)", text("3")),
        field("seeds", "or seeds (comma-separated)", text("")),
        field("max_dispersion", "Max dispersion", text("0.1")))),
    h("fieldset", { class: "kind-walk-forward hidden" }, h("legend", {}, "Walk-forward"),
      h("div", { class: "grid-form" },
        field("walk_forward.folds", "Folds", text("5")),
        field("walk_forward.mode", "Mode", choice(["rolling", "anchored"], "rolling")),
        field("walk_forward.is_oos_ratio", "In-sample / out-of-sample ratio", text("4")))),
    h("p", { class: "form-error", id: "start-error", role: "alert" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "start-submit" }, "Start"),
      h("span", { id: "start-result", class: "muted" })),
  );
  kind.addEventListener("change", () => {
    form.querySelector(".kind-ensemble").classList.toggle("hidden", kind.value !== "ensemble");
    form.querySelector(".kind-walk-forward").classList.toggle("hidden", kind.value !== "walk-forward");
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const { body, path } = buildBody(form, kind.value);
    const button = form.querySelector("#start-submit");
    button.disabled = true;
    try {
      const answer = await api(path, { method: "POST", body, signal });
      const result = form.querySelector("#start-result");
      if (answer.ensemble_id) {
        result.replaceChildren("Ensemble ", h("a", { href: `#/ensemble/${answer.ensemble_id}` }, answer.ensemble_id), ` (${answer.job_ids.length} jobs)`);
      } else {
        result.replaceChildren("Started ", h("a", { href: `#/job/${answer.job_id}` }, answer.job_id));
      }
      detach(onStarted());
    } catch (error) {
      showErrors(form, error, "start-error");
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function buildBody(form, kind) {
  const body = {};
  for (const el of form.querySelectorAll("[data-field] input, [data-field] select")) {
    const name = el.name;
    const raw = el.value.trim();
    if (raw === "") continue;
    const inEnsemble = ["n_seeds", "seeds", "max_dispersion"].includes(name);
    if (inEnsemble && kind !== "ensemble") continue;
    if (name.startsWith("walk_forward.") && kind !== "walk-forward") continue;
    let value = raw;
    // Numbers are sent as numbers when they read as such; anything else is sent as typed, so
    // that the API, not the page, says what is wrong with it.
    if ((INTS.has(name) || FLOATS.has(name)) && raw !== "" && !Number.isNaN(Number(raw))) value = Number(raw);
    if (name === "seeds") value = raw.split(",").map((s) => (Number.isNaN(Number(s.trim())) ? s.trim() : Number(s.trim())));
    const [head, sub] = name.split(".");
    if (sub) (body[head] = body[head] || {})[sub] = value;
    else body[head] = value;
  }
  if (kind === "ensemble" && body.seeds) { delete body.n_seeds; delete body.seed; }
  return { body, path: kind === "ensemble" ? "/api/v2/training/ensemble" : "/api/v2/training/start" };
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".form-error")) el.textContent = "";
}

/** The API's own reasons beside the fields they name; the rest in the form's error line. */
export function showErrors(form, error, generalId) {
  const general = form.querySelector(`#${generalId}`);
  if (!(error instanceof ApiError) || !error.errors.length) {
    general.textContent = error.message;
    return;
  }
  const unplaced = [];
  for (const { field: name, reason } of error.errors) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`)
      || form.querySelector(`[data-error-for="${CSS.escape(name.split(".").slice(0, 2).join("."))}"]`);
    if (slot) {
      slot.textContent = reason;
      const input = slot.parentElement.querySelector("input, select");
      if (input) input.setAttribute("aria-invalid", "true");
    } else {
      unplaced.push(`${name}: ${reason}`);
    }
  }
  general.textContent = unplaced.length ? unplaced.join("; ") : error.message;
}
