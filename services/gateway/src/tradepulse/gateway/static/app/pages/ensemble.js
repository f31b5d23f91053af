// An ensemble: each seed's job and best, the convergence report, parameters side by side.
import { api } from "../api.js";
import { h, kv, num, status, table } from "../dom.js";

export async function ensemblePage(view, signal, ensembleId) {
  const e = await api(`/api/v2/training/ensemble/${ensembleId}`, { signal });
  const names = [...new Set(e.jobs.flatMap((j) => Object.keys(j.params || {})))].sort();
  const c = e.convergence;
  view.replaceChildren(
    h("h1", {}, "Ensemble ", h("code", {}, ensembleId), " ", status(e.status)),
    h("section", { class: "panel" }, h("h2", {}, `Seeds (${e.jobs.length} of ${e.size})`), table([
      { label: "seed", num: true, cell: (j) => String(j.seed) },
      { label: "job", cell: (j) => h("a", { href: `#/job/${j.job_id}` }, j.job_id.slice(0, 12)) },
      { label: "status", cell: (j) => status(j.status) },
      { label: "best", num: true, cell: (j) => num(j.best_value) },
      { label: "best trial", num: true, cell: (j) => num(j.best_trial) },
    ], e.jobs, { id: "ensemble-seeds" })),
    h("section", { class: "panel" }, h("h2", {}, "Convergence"), c ? h("div", {},
      kv([["converged", h("span", { class: c.converged ? "good" : "bad", id: "converged" }, c.converged ? "yes" : "no")],
        ["completed seeds", String(c.completed)], ["max dispersion", num(c.max_dispersion)],
        ["objective mean ± std", `${num(c.objective.mean)} ± ${num(c.objective.std)}`],
        ["objective min / max", `${num(c.objective.min)} / ${num(c.objective.max)}`]]),
      h("h3", {}, "Dispersion per parameter"),
      kv(Object.entries(c.dispersion).map(([k, v]) => [k, h("span", { class: v !== null && v <= c.max_dispersion ? "good" : "bad" }, num(v, 4))])))
      : h("p", { class: "muted" }, "The report comes once every seed's job has ended.")),
    h("section", { class: "panel" }, h("h2", {}, "Best parameters side by side"), table([
      { label: "parameter", cell: (r) => r.name },
      ...e.jobs.map((j) => ({ label: `seed ${j.seed}`, num: true, cell: (r) => num(j.params ? j.params[r.name] : null, 4) })),
      { label: "dispersion", num: true, cell: (r) => num(c ? c.dispersion[r.name] : null, 4) },
    ], names.map((name) => ({ name })), { id: "ensemble-params" })));
}
