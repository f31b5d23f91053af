// The gateway's API as the pages use it. The key lives in sessionStorage and travels only as
// the Authorization header; a 401 opens the key prompt and the request is sent again.
const KEY = "tradepulse.apiKey";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.errors = (body && body.errors) || [];
  }
}

let pendingPrompt = null;

export function currentKey() {
  return sessionStorage.getItem(KEY);
}

/** Show the key dialog; resolves once a key was entered (every waiting request shares it). */
export function askKey(reason) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("api-key");
  document.getElementById("key-reason").textContent =
    reason || "The gateway needs an API key (Authorization: Bearer).";
  input.value = "";
  pendingPrompt = new Promise((resolve) => {
    const form = document.getElementById("key-form");
    const done = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      form.removeEventListener("submit", done);
      dialog.close();
      pendingPrompt = null;
      resolve(key);
    };
    form.addEventListener("submit", done);
  });
  if (!dialog.open) dialog.showModal();
  return pendingPrompt;
}

function headers(extra) {
  const h = new Headers(extra || {});
  const key = currentKey();
  if (key) h.set("Authorization", `Bearer ${key}`);
  return h;
}

async function readBody(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) return response.json();
  const text = await response.text();
  return { detail: text.slice(0, 300) };
}

/** fetch + JSON; `body` is sent as JSON, `form` as multipart. Throws ApiError. */
export async function api(path, { method = "GET", body, form, signal } = {}) {
  // Without a key every call would answer 401: ask first instead.
  if (!currentKey()) await askKey();
  for (let attempt = 0; ; attempt++) {
    const init = { method, signal, headers: headers() };
    if (body !== undefined) {
      init.headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(body);
    } else if (form !== undefined) {
      init.body = form;
    }
    const response = await fetch(path, init);
    if (response.status === 401 && attempt < 3) {
      await askKey(currentKey() ? "That key was refused (401). Enter a valid key." : undefined);
      continue;
    }
    const data = response.status === 204 ? null : await readBody(response);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}

/** Server-sent events over fetch (EventSource cannot send an Authorization header).
 *  Calls onEvent(name, data) for each event until the stream ends or `signal` aborts. */
export async function stream(path, onEvent, signal) {
  if (!currentKey()) await askKey();
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
    if (response.status === 401 && attempt < 3) {
      await askKey("That key was refused (401). Enter a valid key.");
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await readBody(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }
}

/** Every page of a paged list endpoint (`key` names the list in the answer). */
export async function allPages(path, key, pageSize = 1000, signal) {
  const out = [];
  const sep = path.includes("?") ? "&" : "?";
  for (let offset = 0; ; offset += pageSize) {
    const page = await api(`${path}${sep}limit=${pageSize}&offset=${offset}`, { signal });
    out.push(...page[key]);
    if (out.length >= page.total || page[key].length === 0) return out;
  }
}

/** Run a page's follow-up work without awaiting it: a navigation away aborts it, which is no
 *  error; anything else is reported. */
export function detach(promise) {
  promise.catch((error) => {
    if (error && error.name !== "AbortError") console.error(error);
  });
}
