// The Vault room: every checkpoint with its ledger stats, aliases and the zones holding it; the zones
// with their free space; the champion's history. Actions (promote, push, fetch, export, delete) call
// /api/vault/*, which calls the VaultKeeper, and the room reloads when a vault or checkpoint event
// arrives (an alias moved from the CLI, a checkpoint landed), so every tab shows the same vault.
import { api, el, fmt, setupToken, toast } from "./common.js";
import { Live } from "./live.js";

const rows = document.getElementById("ckpt-rows");
const showGone = document.getElementById("show-gone");
let data = null;
let refreshTimer = null;

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "–"; }

const isHeld = (cp) => cp.locations.some((l) => l.status === "verified");
const isLocal = (cp) => cp.locations.some((l) => l.zone === "local" && l.status === "verified");

async function act(title, path, body, { quiet = false } = {}) {
  try {
    const res = await api(path, { method: "POST", body });
    if (!quiet) toast(title, describe(res));
    await load();
    return res;
  } catch (err) {
    toast(`${title} refused`, err.message, { kind: "bad" });
    throw err;
  }
}

function describe(res) {
  if (res.moved !== undefined) return `${res.name}: ${res.from || "(unset)"} → ${res.asset_id}`;
  if (res.direction) return `${res.asset_id} → ${res.dst_zone}: ${res.status}, ${bytes(res.bytes_moved)} moved`;
  if (res.fetched !== undefined) return `${res.asset_id} ${res.fetched ? "fetched" : "already here"}`;
  if (res.deleted) return `${res.asset_id}: the copy in ${res.zone} is gone`;
  return "done";
}

function promote(cp) {
  act("New champion", "/api/vault/promote", { asset: cp.asset_id, reason: `promoted in the Vault room (step ${cp.step})` }).catch(() => {});
}

async function remove(cp, zone) {
  const where = zone === "local" ? "this home" : `zone ${zone}`;
  if (!window.confirm(`Delete the copy of ${cp.name} in ${where}?`)) return;
  try {
    await act("Deleted", "/api/vault/delete", { asset: cp.asset_id, zone }, { quiet: false });
  } catch (err) {
    if (err.status === 409 && window.confirm(`${err.message}\n\nIt is the last verified copy. Delete it anyway?`)) {
      act("Deleted", "/api/vault/delete", { asset: cp.asset_id, zone, force: true }).catch(() => {});
    }
  }
}

function aliasTags(names) {
  return (names || []).map((n) => el("span", { class: `tag alias ${n}`, text: n }));
}

function zoneTags(cp) {
  return cp.locations.map((l) => {
    const tag = el("span", { class: `tag zone ${l.status}`, "data-zone": l.zone, title: `${l.zone}: ${l.status} · ${l.path} · verified ${when(l.verified_at)}`, text: l.zone });
    if (l.zone !== "local") tag.append(el("button", { title: `delete the copy in ${l.zone}`, onclick: () => remove(cp, l.zone), text: "×" }));
    return tag;
  });
}

function actions(cp, champion) {
  const box = el("div", { class: "vactions" });
  const held = isHeld(cp);
  box.append(el("button", {
    class: "promote", "data-action": "promote", disabled: !held || champion === cp.asset_id,
    title: held ? "make this checkpoint the champion" : "no zone holds it", onclick: () => promote(cp), text: "★ Champion",
  }));
  const others = (data.zones || []).filter((z) => z.id !== "local" && !cp.locations.some((l) => l.zone === z.id && l.status === "verified"));
  if (isLocal(cp) && others.length) {
    const pick = el("select", { "aria-label": "zone to push to" }, ...others.map((z) => el("option", { value: z.id, text: z.id })));
    box.append(pick, el("button", {
      "data-action": "push", onclick: () => act("Pushed", "/api/vault/push", { asset: cp.asset_id, zone: pick.value }).catch(() => {}), text: "Push",
    }));
  }
  if (isLocal(cp)) {
    box.append(el("a", { class: "btn", "data-action": "export", href: `/api/vault/export/${encodeURIComponent(cp.asset_id)}`, download: "", text: "Export" }));
    box.append(el("button", { class: "danger", "data-action": "delete", onclick: () => remove(cp, "local"), text: "Delete" }));
  } else if (held) {
    box.append(el("button", { "data-action": "fetch", onclick: () => act("Fetched", "/api/vault/fetch", { asset: cp.asset_id }).catch(() => {}), text: "Fetch" }));
  }
  return box;
}

function renderCheckpoints() {
  const champion = data.aliases.champion?.asset_id;
  const list = data.checkpoints.filter((cp) => showGone.checked || isHeld(cp));
  document.getElementById("vault-count").textContent = `${data.checkpoints.filter(isHeld).length} held · ${data.checkpoints.length} in the ledger`;
  if (!list.length) {
    rows.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "empty", text: "No checkpoints yet: the vault fills as the hero trains." })));
    return;
  }
  rows.replaceChildren(...list.map((cp) => el("tr", {
    "data-asset": cp.asset_id, "data-step": cp.step,
    class: [isHeld(cp) ? "" : "gone", cp.asset_id === champion ? "champion" : ""].join(" ").trim(),
  },
  el("td", { class: "num", text: cp.step.toLocaleString() }),
  el("td", { class: "ckname" }, cp.name, el("small", { text: cp.created_at || "" })),
  el("td", { class: "num", text: fmt(cp.train_loss, 4) }),
  el("td", { class: "num", text: fmt(cp.val_loss, 4) }),
  el("td", { text: cp.skill_name ? `${cp.skill_name.toUpperCase()} L${cp.skill_level ?? "?"}` : "–" }),
  el("td", { class: "num", text: bytes(cp.size_bytes) }),
  el("td", { class: "aliases" }, ...aliasTags(cp.aliases)),
  el("td", { class: "zones" }, ...(cp.locations.length ? zoneTags(cp) : [el("span", { class: "empty", text: "none" })])),
  el("td", {}, actions(cp, champion)))));
}

function renderChampion() {
  const a = data.aliases.champion;
  const cp = a && data.checkpoints.find((c) => c.asset_id === a.asset_id);
  document.getElementById("champion-name").textContent = a ? (cp?.name || a.asset_id) : "none yet";
  document.getElementById("champion-meta").textContent = a
    ? `step ${a.step ?? "?"} · loss ${fmt(cp?.train_loss, 4)} · set by ${a.set_by}${a.reason ? `: ${a.reason}` : ""}`
    : "promote a checkpoint below";
}

function renderStats() {
  const s = data.stats;
  const stat = (label, value) => el("div", { class: "stat" }, el("div", {}, el("small", { text: label }), el("b", { text: value })));
  document.getElementById("vault-stats").replaceChildren(
    stat("ASSETS", fmt(s.assets, 0)), stat("STORED", bytes(s.bytes)), stat("UNIQUE", bytes(s.unique_file_bytes)),
    stat("ALIASES", fmt(s.aliases, 0)));
}

function renderZones() {
  const held = data.stats.zones || {};
  document.getElementById("zone-count").textContent = `${data.zones.length}`;
  document.getElementById("zone-list").replaceChildren(...data.zones.map((z) => el("div", { class: "zone-card", "data-zone": z.id },
    el("div", { class: "zname" }, el("span", { text: z.id }), el("span", { class: "badge", text: z.kind })),
    el("div", { class: "zurl", text: z.url }),
    el("div", {}, `free ${z.free_bytes === null || z.free_bytes === undefined ? "unknown" : bytes(z.free_bytes)}`,
      ` · ${held[z.id]?.verified ?? 0} verified copies`,
      held[z.id]?.corrupt ? el("b", { class: "bad", text: ` · ${held[z.id].corrupt} corrupt` }) : null))));
}

function renderHistory() {
  const list = document.getElementById("alias-history");
  const hist = data.champion_history;
  if (!hist.length) { list.replaceChildren(el("li", { class: "empty", text: "No champion crowned yet." })); return; }
  list.replaceChildren(...hist.map((h) => el("li", { "data-to": h.to_asset ?? "", "data-from": h.from_asset ?? "" },
    el("b", { text: h.name }), ` ${h.from_asset ?? "(unset)"} → ${h.to_asset ?? "(removed)"}`,
    el("small", { text: `${when(h.at)} · by ${h.by}${h.reason ? ` · ${h.reason}` : ""}` }))));
}

function render() {
  renderChampion();
  renderStats();
  renderCheckpoints();
  renderZones();
  renderHistory();
}

async function load() {
  data = await api("/api/vault");
  render();
}

function refreshSoon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => load().catch(() => {}), 300); }

async function boot() {
  api("/api/state").then((s) => setupToken(s.auth)).catch(() => {});
  showGone.onchange = () => data && renderCheckpoints();
  try {
    await load();
  } catch (err) {
    rows.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "empty", text: err.message })));
    toast("The vault is shut", err.message, { kind: "bad" });
  }
  document.body.dataset.ready = "1";
  const live = new Live(data?.last_event_id ?? 0, (evs) => {
    if (evs.some((e) => e.kind.startsWith("vault.") || e.kind.startsWith("checkpoint."))) refreshSoon();
  });
  live.start();
}
boot();
