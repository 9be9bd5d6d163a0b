// The Armory: every config key as a field; saving sends the whole config through the realm's own
// validator (PUT /api/config) and shows a refused value next to its key with the validator's words.
import { api, el, setConnected, setupToken } from "./common.js";

let current = null;
const form = document.getElementById("armory-form");
const banner = document.getElementById("armory-banner");

function field(key, value, restart) {
  let input;
  if (typeof value === "boolean") input = el("input", { type: "checkbox", checked: value });
  else if (typeof value === "number") input = el("input", { type: "number", step: "any", value: String(value) });
  else if (Array.isArray(value)) input = el("input", { type: "text", value: value.join(", ") });
  else input = el("input", { type: "text", value: value ?? "", placeholder: value === null ? "null" : "" });
  input.name = key;
  input.dataset.kind = Array.isArray(value) ? "list" : value === null ? "null" : typeof value;
  return el("div", { class: "armory-row", "data-key": key },
    el("label", {}, el("code", { text: key }), restart ? el("span", { class: "restart", text: "restart" }) : null),
    input, el("span", { class: "err" }));
}

function render(cfg, restartKeys) {
  form.replaceChildren();
  for (const [section, value] of Object.entries(cfg)) {
    const box = el("div", { class: "armory-section" }, el("h3", { text: section }));
    const entries = value !== null && typeof value === "object" && !Array.isArray(value) ? Object.entries(value).map(([k, v]) => [`${section}.${k}`, v]) : [[section, value]];
    for (const [key, v] of entries) box.append(field(key, v, restartKeys.includes(key)));
    form.append(box);
  }
}

function readValue(input) {
  const raw = input.value.trim();
  switch (input.dataset.kind) {
    case "boolean": return input.checked;
    case "number": return raw === "" ? null : Number(raw);
    case "list": return raw ? raw.split(",").map((s) => s.trim()).filter(Boolean) : [];
    case "null": return raw === "" ? null : raw;
    default: return raw === "" ? null : raw;
  }
}

function collect() {
  const out = {};
  for (const input of form.querySelectorAll("input")) {
    const [section, key] = input.name.split(".");
    if (key === undefined) out[section] = readValue(input);
    else (out[section] ??= {})[key] = readValue(input);
  }
  return out;
}

function show(kind, text) { banner.replaceChildren(el("div", { class: `banner ${kind}`, text })); }

async function load() {
  const data = await api("/api/config");
  current = data;
  document.getElementById("armory-path").textContent = `${data.source} file: ${data.path}`;
  render(data.config, data.restart_keys);
}

async function save() {
  for (const row of form.querySelectorAll(".armory-row")) { row.classList.remove("bad"); row.querySelector(".err").textContent = ""; }
  try {
    const res = await api("/api/config", { method: "PUT", body: { config: collect() } });
    const restart = res.restart_needed.length ? ` Restart the realm for: ${res.restart_needed.join(", ")}.` : "";
    show("ok", `Saved to ${res.path}. Changed: ${res.changed.join(", ") || "nothing"}.${restart}`);
    await load();
  } catch (err) {
    show("bad", err.message);
    const key = err.data?.key;
    const row = key && form.querySelector(`.armory-row[data-key="${CSS.escape(key.replace(/\[\d+\]$/, ""))}"]`);
    if (row) { row.classList.add("bad"); row.querySelector(".err").textContent = err.data.problem || err.message; }
  }
}

document.getElementById("armory-save").onclick = save;
document.getElementById("armory-reset").onclick = () => { banner.replaceChildren(); load(); };
setConnected(true, "armory");
api("/api/state").then((s) => setupToken(s.auth)).catch(() => {});
load().catch((err) => show("bad", err.message));
void current;
