// The Oracle room: pick a host and a checkpoint (from the ledger), chat with streamed tokens, stop,
// regenerate, put two checkpoints side by side, and try an eval problem with the skill's own verdict.
// Everything goes through the Tavern's /oracle/* endpoints (tavern/api/oracle.py), which proxy the
// Oracle host's OpenAI-compatible API; a stream is parsed here as OpenAI SSE ("data: {json}" events,
// "data: [DONE]", ": loading" comments while the checkpoint loads).
import { api, el, fmt, fmtEta, setConnected, setupToken, toast, token } from "./common.js";

const $ = (id) => document.getElementById(id);
const SIDES = ["a", "b"];
const state = {
  checkpoints: [],
  hosts: [],
  sides: { a: { messages: [] }, b: { messages: [] } },
  controllers: new Set(),
  problem: null,
};

// ---- pickers -------------------------------------------------------------------------------------
function ckptLabel(c) {
  const bits = [`step ${c.step}`];
  if (c.train_loss !== null && c.train_loss !== undefined) bits.push(`loss ${fmt(c.train_loss)}`);
  if (c.skill_name) bits.push(`${c.skill_name} L${c.skill_level ?? "?"}`);
  if (c.age_s !== null && c.age_s !== undefined) bits.push(`${fmtEta(c.age_s)} ago`);
  if (c.aliases?.length) bits.push(c.aliases.join(", "));
  return bits.join(" · ");
}

function fillCheckpoints(select, chosen) {
  select.replaceChildren(...state.checkpoints.map((c) => el("option", { value: c.model, text: ckptLabel(c) })));
  if (!state.checkpoints.length) select.append(el("option", { value: "", text: "no checkpoint in the ledger yet" }));
  if (chosen && state.checkpoints.some((c) => c.model === chosen)) select.value = chosen;
}

function card(side) {
  const box = $(`card-${side}`);
  const c = state.checkpoints.find((x) => x.model === model(side));
  if (!c) { box.replaceChildren(); return; }
  const stat = (label, value) => el("div", {}, el("small", { text: label }), el("b", { text: value }));
  box.replaceChildren(
    stat("step", String(c.step)),
    stat("train loss", fmt(c.train_loss)),
    stat("val loss", fmt(c.val_loss)),
    stat("skill", c.skill_name ? `${c.skill_name} L${c.skill_level ?? "?"}` : "–"),
    stat("age", c.age_s === null || c.age_s === undefined ? "–" : `${fmtEta(c.age_s)} ago`),
    stat("name", c.name.replace(/^checkpoint-/, "")),
    el("div", { class: "aliases" }, ...(c.aliases || []).map((a) => el("span", { class: `otag ${a}`, text: a }))),
  );
  $(`head-${side}`).textContent = `${side === "a" ? "A" : "B"} · ${c.name}`;
}

const model = (side) => $(`ckpt-${side}`).value || null;
const host = () => $("host-select").value || null;
const split = () => $("side-by-side").checked;
const activeSides = () => (split() ? SIDES : ["a"]);

async function loadCheckpoints() {
  const data = await api("/oracle/checkpoints");
  state.checkpoints = data.checkpoints;
  const a = model("a") || data.default;
  // The versus side starts on another checkpoint than A, so side by side compares two at once.
  const b = model("b") || state.checkpoints.find((c) => c.model !== a)?.model || a;
  fillCheckpoints($("ckpt-a"), a);
  fillCheckpoints($("ckpt-b"), b);
  $("ckpt-count").textContent = `${state.checkpoints.length} checkpoint${state.checkpoints.length === 1 ? "" : "s"}`;
  SIDES.forEach(card);
}

async function loadHosts() {
  const data = await api("/oracle/hosts");
  state.hosts = data.hosts;
  const sel = $("host-select");
  const keep = sel.value;
  sel.replaceChildren(...data.hosts.map((h) => el("option", { value: h.name, text: `${h.name} · ${h.url}` })));
  if (!data.hosts.length) sel.append(el("option", { value: "", text: "no host offers the oracle" }));
  sel.value = data.hosts.some((h) => h.name === keep) ? keep : data.default || "";
}

function describeStatus(st) {
  // The Oracle's /oracle/status: what is loaded, its memory, when last used.
  const loaded = st?.loaded || st?.models || [];
  if (!Array.isArray(loaded) || !loaded.length) return "up · nothing loaded";
  const names = loaded.map((m) => {
    const name = m.model || m.name || m.id || "?";
    const mb = m.memory_bytes ?? m.bytes;
    return mb ? `${name} (${fmt(mb / 1e6, 1)} MB)` : name;
  });
  return `up · loaded: ${names.join(", ")}`;
}

async function refreshStatus() {
  const box = $("host-status");
  if (!host()) { box.classList.remove("up"); box.querySelector(".text").textContent = "no Oracle host"; return; }
  try {
    const data = await api(`/oracle/status?host=${encodeURIComponent(host())}`);
    const h = data.hosts[0];
    box.classList.toggle("up", h.up);
    box.querySelector(".text").textContent = h.up ? describeStatus(h.status) : `down: ${h.error}`;
    setConnected(h.up, h.up ? `oracle ${h.host}` : `oracle ${h.host} down`);
  } catch (err) {
    box.classList.remove("up");
    box.querySelector(".text").textContent = err.message;
    setConnected(false, "oracle unknown");
  }
}

// ---- chat ----------------------------------------------------------------------------------------
function settings() {
  const num = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };
  return {
    max_tokens: num("set-max-tokens"), temperature: num("set-temperature"), top_p: num("set-top-p"),
    max_think_tokens: num("set-think"), seed: num("set-seed"),
    ignore_eos: $("set-ignore-eos").checked || undefined,
  };
}

function bubble(role, text = "") {
  const who = el("div", { class: "who" }, el("span", { text: role === "user" ? "you" : "oracle" }), el("span", { class: "meta" }));
  const li = el("li", { class: `msg ${role}` }, who, el("pre", { class: "text", text }));
  if (role === "assistant") li.dataset.state = "waiting";
  return li;
}

function append(side, li) {
  const list = $(`transcript-${side}`);
  list.querySelector(".empty")?.remove();
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function setBusy(on) {
  $("btn-send").disabled = on;
  $("btn-ask").disabled = on;
  $("btn-stop").disabled = !on;
  $("btn-regen").disabled = on || !SIDES.some((s) => state.sides[s].messages.length);
  $("chat-state").textContent = on ? "the Oracle speaks…" : "ready";
}

// One SSE event (lines up to a blank line) applied to the answer being streamed.
function applyEvent(raw, answer) {
  for (const line of raw.split("\n")) {
    if (line.startsWith(":")) {
      if (line.includes("loading")) answer.onState("loading");
      continue;
    }
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") { answer.done = true; continue; }
    let chunk;
    try { chunk = JSON.parse(data); } catch { continue; }
    if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
    if (chunk.model) answer.model = chunk.model;
    if (chunk.usage) answer.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (!choice) continue;
    const piece = choice.delta?.content ?? choice.text ?? "";
    if (piece) { answer.text += piece; answer.onText(answer.text); }
    if (choice.finish_reason) answer.finish = choice.finish_reason;
  }
}

// Streams one answer from `ckpt` to `messages`; calls onText as tokens arrive. Resolves to the answer.
async function streamAnswer(ckpt, messages, { onText = () => {}, onState = () => {}, overrides = {} } = {}) {
  const controller = new AbortController();
  state.controllers.add(controller);
  const answer = { text: "", model: null, finish: null, usage: null, done: false, stopped: false, onText, onState };
  const headers = { "Content-Type": "application/json" };
  if (token()) headers["X-Realm-Token"] = token();
  const body = {
    host: host(), model: ckpt, messages, stream: true, stream_options: { include_usage: true },
    ...settings(), ...overrides,
  };
  try {
    const res = await fetch("/oracle/chat", { method: "POST", headers, body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      throw new Error(data.error || `the Oracle answered HTTP ${res.status}`);
    }
    onState("streaming");
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        applyEvent(buf.slice(0, cut), answer);
        buf = buf.slice(cut + 2);
      }
    }
    if (buf.trim()) applyEvent(buf, answer);
  } catch (err) {
    if (err.name !== "AbortError") throw err;
    answer.stopped = true;
  } finally {
    state.controllers.delete(controller);
  }
  return answer;
}

async function answerSide(side) {
  const conv = state.sides[side];
  const li = bubble("assistant");
  append(side, li);
  const text = li.querySelector(".text");
  const meta = li.querySelector(".meta");
  try {
    const ans = await streamAnswer(model(side), conv.messages, {
      onText: (t) => { text.textContent = t; $(`transcript-${side}`).scrollTop = 1e9; },
      onState: (s) => { li.dataset.state = s; },
    });
    li.dataset.state = ans.stopped ? "stopped" : "done";
    if (ans.model) li.dataset.model = ans.model;
    const tokens = ans.usage?.completion_tokens;
    meta.textContent = [ans.model, ans.finish, tokens !== undefined ? `${tokens} tokens` : null, ans.stopped ? "stopped" : null]
      .filter(Boolean).join(" · ");
    // Stopped before a word: no answer joins the history, so Regenerate asks the question again.
    if (ans.text || !ans.stopped) conv.messages.push({ role: "assistant", content: ans.text });
  } catch (err) {
    li.dataset.state = "error";
    text.textContent = err.message;
    toast("The Oracle is silent", err.message, { kind: "bad" });
  }
}

async function ask(message) {
  const sides = activeSides();
  for (const side of sides) {
    state.sides[side].messages.push({ role: "user", content: message });
    append(side, bubble("user", message));
  }
  setBusy(true);
  try { await Promise.all(sides.map(answerSide)); } finally { setBusy(false); }
}

async function regenerate() {
  const sides = activeSides().filter((s) => state.sides[s].messages.length);
  for (const side of sides) {
    // The last answer goes (kept in the history, or an error / empty stop that never joined it).
    const msgs = state.sides[side].messages;
    if (msgs.at(-1)?.role === "assistant") msgs.pop();
    const last = $(`transcript-${side}`).lastElementChild;
    if (last?.classList.contains("assistant")) last.remove();
  }
  if (!sides.length) return;
  setBusy(true);
  try { await Promise.all(sides.map(answerSide)); } finally { setBusy(false); }
}

function stopAll() { for (const c of state.controllers) c.abort(); }

function clearChat() {
  stopAll();
  for (const side of SIDES) {
    state.sides[side].messages = [];
    $(`transcript-${side}`).replaceChildren();
  }
  $("transcript-a").append(el("li", { class: "empty", text: "Choose a checkpoint, then ask it anything." }));
  setBusy(false);
}

function setSplit() {
  const on = split();
  $("b-box").hidden = !on;
  document.querySelector(".chat-col[data-side='b']").hidden = !on;
  $("chat-columns").classList.toggle("split", on);
  SIDES.forEach(card);
}

async function loadOnHost() {
  const wanted = [...new Set(activeSides().map(model).filter(Boolean))];
  for (const m of wanted) {
    try {
      const res = await api("/oracle/load", { method: "POST", body: { host: host(), model: m } });
      toast("Checkpoint summoned", `${res.model || m} is loaded on ${res.host}`);
    } catch (err) {
      toast("Load failed", err.message, { kind: "bad" });
    }
  }
  refreshStatus();
}

// ---- eval problems -------------------------------------------------------------------------------
async function loadSkills() {
  const data = await api("/api/skills");
  const sel = $("eval-skill");
  sel.replaceChildren(...data.skills.map((s) => {
    const o = el("option", { value: s.id, text: `${s.short} · ${s.name}` });
    o.dataset.level = s.working_level; o.dataset.max = s.max_level ?? "";
    return o;
  }));
  const pickLevel = () => {
    const o = sel.selectedOptions[0];
    if (!o) return;
    $("eval-level").value = o.dataset.level || 1;
    if (o.dataset.max) $("eval-level").max = o.dataset.max;
  };
  sel.onchange = pickLevel;
  pickLevel();
}

async function drawProblem() {
  const skill = $("eval-skill").value;
  const level = $("eval-level").value;
  try {
    const p = await api(`/oracle/problem?skill=${encodeURIComponent(skill)}&level=${encodeURIComponent(level)}`);
    state.problem = p;
    $("problem").hidden = false;
    $("problem-meta").textContent = `${p.skill.toUpperCase()} level ${p.level} · item ${p.index + 1} of ${p.count}`;
    $("problem-prompt").textContent = p.prompt;
    $("problem-expected").textContent = p.expected;
    $("verdicts").replaceChildren();
  } catch (err) {
    toast("No problem drawn", err.message, { kind: "bad" });
  }
}

async function askProblem() {
  const p = state.problem;
  if (!p) return;
  const sides = activeSides();
  const box = $("verdicts");
  const cards = sides.map((side) => {
    const c = el("div", { class: "verdict", "data-side": side },
      el("div", { class: "vhead" }, el("span", { text: side.toUpperCase() }), el("b", { text: model(side) || "default" }), el("span", { class: "mark", text: "…" })),
      el("pre", { class: "text" }));
    return c;
  });
  box.replaceChildren(...cards);
  setBusy(true);
  try {
    // A fresh, greedy conversation per checkpoint that ends where the model ends it: the scorer reads
    // the answer the way evals do (the think budget and max tokens still apply).
    const answers = await Promise.all(sides.map((side, i) => streamAnswer(model(side), [{ role: "user", content: p.prompt }], {
      onText: (t) => { cards[i].querySelector(".text").textContent = t; },
      overrides: { temperature: 0, seed: undefined, ignore_eos: undefined },
    }).catch((err) => ({ text: "", error: err.message }))));
    answers.forEach((a, i) => { if (a.model) cards[i].querySelector("b").textContent = a.model; if (a.error) cards[i].querySelector(".text").textContent = a.error; });
    const verdict = await api("/oracle/score", {
      method: "POST", body: { skill: p.skill, level: p.level, index: p.index, answers: answers.map((a) => a.text) },
    });
    verdict.correct.forEach((ok, i) => {
      cards[i].dataset.correct = String(ok);
      cards[i].querySelector(".mark").textContent = ok ? "✓ correct" : "✗ wrong";
    });
  } catch (err) {
    toast("No verdict", err.message, { kind: "bad" });
  } finally {
    setBusy(false);
  }
}

// ---- wiring --------------------------------------------------------------------------------------
$("chat-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message || $("btn-send").disabled) return;
  input.value = "";
  ask(message);
});
$("chat-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("chat-form").requestSubmit(); }
});
$("btn-stop").onclick = stopAll;
$("btn-regen").onclick = regenerate;
$("btn-clear").onclick = clearChat;
$("btn-load").onclick = loadOnHost;
$("btn-refresh").onclick = () => { loadCheckpoints().catch(() => {}); refreshStatus(); };
$("btn-draw").onclick = drawProblem;
$("btn-ask").onclick = askProblem;
$("side-by-side").onchange = setSplit;
$("host-select").onchange = refreshStatus;
$("ckpt-a").onchange = () => card("a");
$("ckpt-b").onchange = () => card("b");

async function start() {
  api("/api/state").then((s) => setupToken(s.auth)).catch(() => {});
  const results = await Promise.allSettled([loadCheckpoints(), loadHosts(), loadSkills()]);
  for (const r of results) if (r.status === "rejected") toast("The Oracle room", r.reason.message, { kind: "bad" });
  setSplit();
  setBusy(false);
  await refreshStatus();
  document.body.dataset.ready = "1";
}

start();
