// The dashboard: hash routes (#/jobs, #/job/<id>, #/config/<id>, #/ensemble/<id>, #/data),
// plain ES modules served by the gateway, no build step.
import { askKey } from "./api.js";
import { errorBox, h } from "./dom.js";
import { configPage, configsPage } from "./pages/config.js";
import { dataPage } from "./pages/data.js";
import { ensemblePage } from "./pages/ensemble.js";
import { jobPage } from "./pages/job.js";
import { jobsPage } from "./pages/jobs.js";

const ROUTES = [
  [/^#\/jobs$/, jobsPage, "jobs"],
  [/^#\/job\/([A-Za-z0-9_-]+)$/, jobPage, "jobs"],
  [/^#\/configs$/, configsPage, "configs"],
  [/^#\/config\/([A-Za-z0-9_-]+)$/, configPage, "configs"],
  [/^#\/ensemble\/([A-Za-z0-9_-]+)$/, ensemblePage, "jobs"],
  [/^#\/data$/, dataPage, "data"],
];

let current = null;

async function route() {
  const hash = location.hash || "#/jobs";
  const match = ROUTES.map(([re, page, nav]) => [hash.match(re), page, nav]).find(([m]) => m);
  if (current) current.abort();
  current = new AbortController();
  const view = document.getElementById("view");
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", Boolean(match) && link.dataset.nav === match[2]);
  }
  if (!match) {
    view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No page at ", hash, ". ", h("a", { href: "#/jobs" }, "Jobs")));
    return;
  }
  const [m, page] = match;
  const signal = current.signal;
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    await page(view, signal, ...m.slice(1));
  } catch (error) {
    if (signal.aborted || error.name === "AbortError") return;
    view.replaceChildren(h("h1", {}, "Something went wrong"), errorBox(error));
  }
}

document.getElementById("change-key").addEventListener("click", async () => {
  await askKey("Enter the API key to use in this tab.");
  route();
});
window.addEventListener("hashchange", route);
if (!location.hash) history.replaceState(null, "", "#/jobs");
// Without a key the first request answers 401, which opens the key prompt.
route();
