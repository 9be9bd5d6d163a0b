// The quest board: columns per status, uploads (file picker and drag-and-drop) and quest actions.
import { api, el, toast } from "./common.js";

const COLUMNS = [["processing", "In battle"], ["queued", "Queued"], ["completed", "Completed"], ["failed", "Failed"], ["skipped", "Skipped"]];

function questCard(q, refresh) {
  const act = async (path, body) => {
    try { await api(`/api/quests/${q.id}/${path}`, { method: "POST", body }); refresh(); }
    catch (err) { toast("Quest action refused", err.message, { kind: "bad" }); }
  };
  const meta = [`#${q.id}`, q.example_count != null ? `${q.example_count} examples` : null, q.spec, q.source].filter(Boolean).join(" · ");
  const card = el("div", { class: "qcard", "data-quest": q.id, "data-status": q.status },
    el("div", { class: "qname", text: q.name }),
    el("div", { class: "qmeta" }, el("span", { class: `prio ${q.priority}`, text: q.priority }), ` ${meta}`));
  if (q.status === "failed" || q.status === "cancelled") {
    const detail = q.error?.errors?.[0]?.message || q.error?.errors?.[0] || "";
    card.append(el("div", { class: "reason", text: `${q.reason || "failed"}${typeof detail === "string" && detail && detail !== q.reason ? ` — ${detail}` : ""}` }));
    card.append(el("div", { class: "qactions" }, el("button", { text: "Retry", onclick: () => act("retry") })));
  } else if (q.status === "retried") {
    // Its file went back to the inbox: intake gives it a new card; this one keeps the refusal.
    card.append(el("div", { class: "reason", text: `${q.reason || "failed"} — retried: sent back to the inbox` }));
  } else if (q.status === "queued") {
    const sel = el("select", { "aria-label": "priority" }, ...["high", "normal", "low"].map((p) => el("option", { text: p, selected: p === q.priority })));
    sel.onchange = () => act("priority", { priority: sel.value });
    card.append(el("div", { class: "qactions" }, sel, el("button", { class: "danger", text: "Cancel", onclick: () => act("cancel") })));
  }
  return card;
}

export class QuestBoard {
  constructor() {
    this.host = document.getElementById("columns");
    this.timer = null;
    this.setupUpload();
  }

  async refresh() {
    const data = await api("/api/quests");
    this.host.replaceChildren(...COLUMNS.map(([key, title]) => {
      const list = data.columns[key] || [];
      return el("div", { class: "column", "data-column": key },
        el("h3", {}, el("span", { text: title }), el("span", { text: String(list.length) })),
        ...list.map((q) => questCard(q, () => this.refresh())));
    }));
    document.getElementById("inbox-info").textContent = data.inbox.length ? `inbox: ${data.inbox.join(", ")}` : "inbox empty";
  }

  // Many events arrive together (a battle ends, the next starts): refresh once after they settle.
  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), 250);
  }

  setupUpload() {
    const zone = document.getElementById("dropzone");
    const input = document.getElementById("file-input");
    input.addEventListener("change", () => { for (const f of input.files) this.upload(f); input.value = ""; });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault(); zone.classList.remove("over");
      for (const f of e.dataTransfer.files) this.upload(f);
    });
  }

  async upload(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("priority", document.getElementById("upload-priority").value);
    try {
      const res = await api("/api/quests", { method: "POST", form });
      const q = res.quest;
      if (q && q.status === "failed") toast("Quest rejected", `${q.name}: ${q.reason}`, { kind: "bad", key: `rejected-${q.id}` });
      else toast("Quest delivered", q ? `${q.name} is ${q.status}` : `${res.name} is in the inbox; the intake takes it next`, { kind: "quest" });
      this.refresh();
    } catch (err) {
      toast("Upload refused", err.message, { kind: "bad" });
    }
  }
}
