// Rendering of the hero card, battle panel, skill cards, achievements and the chronicle.
import { el, fmt, fmtEta, sparkline } from "./common.js";

const $ = (id) => document.getElementById(id);

export function renderHero(h) {
  $("hero-name").textContent = h.name;
  // The model, its memory profile and trainable / total parameters; the reason the profile was chosen on hover.
  const loadout = $("hero-loadout");
  if (loadout) { loadout.textContent = h.loadout || ""; loadout.title = h.profile_reason || ""; }
  $("hero-level").textContent = h.level;
  const span = Math.max(1, h.next_level_xp - h.level_xp);
  const into = Math.max(0, Math.min(span, h.xp - h.level_xp));
  $("xp-fill").style.width = `${(100 * into) / span}%`;
  $("xp-label").textContent = `${into.toLocaleString()} / ${span.toLocaleString()} XP`;
  $("xp-label").dataset.xp = h.xp;
  $("stat-atk").textContent = fmt(h.atk, 1);
  $("stat-def").textContent = fmt(h.def, 1);
  $("stat-acc").textContent = typeof h.acc === "number" && h.acc <= 1 ? `${Math.round(h.acc * 100)}%` : fmt(h.acc, 1);
  $("stat-gold").textContent = fmt(h.gold, 0);
}

export function floatXp(amount) {
  if (!(amount > 0)) return;
  const f = el("span", { class: "floater", text: `+${amount.toLocaleString()} XP` });
  f.style.left = `${30 + Math.random() * 40}%`;
  f.style.top = `${120 + Math.random() * 60}px`;
  $("floaters").append(f);
  setTimeout(() => f.remove(), 1500);
}

export function renderBattle(b, pending) {
  const state = b.state || "idle";
  const badge = $("battle-state");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  $("battle-quest").textContent = b.quest_name ? `${b.quest_name}` : "No quest in battle";
  if (b.step !== undefined) $("battle-step").textContent = `step ${Number(b.step).toLocaleString()}`;
  if (b.loss !== undefined) $("battle-loss").textContent = fmt(b.loss);
  if (b.val_loss !== undefined) $("battle-val").textContent = fmt(b.val_loss);
  if (b.tokens_per_s !== undefined) $("battle-tps").textContent = fmt(b.tokens_per_s, 0);
  if (b.eta_s !== undefined) $("battle-eta").textContent = fmtEta(b.eta_s);
  const pct = Math.round(100 * Math.max(0, Math.min(1, b.progress || 0)));
  $("quest-fill").style.width = `${pct}%`;
  $("quest-label").textContent = `${pct}%`;
  if (pending !== undefined) renderPending(pending);
}

export function renderPending(pending) {
  const p = $("pending");
  if (!pending.length) { p.hidden = true; p.dataset.action = ""; return; }
  const last = pending[pending.length - 1];
  p.hidden = false;
  p.dataset.action = last.action;
  p.textContent = `${last.action} requested`;
  p.title = "sent to the arena; the trainer takes it between steps";
}

export function renderSkills(skills) {
  const host = $("skills");
  host.replaceChildren();
  for (const s of skills) {
    const pips = el("div", { class: "pips" }, el("span", { text: `L${s.working_level}:` }));
    for (let i = 0; i < s.window; i++) {
      const r = s.recent[i];
      const cls = r ? (r.accuracy >= s.threshold ? "pip pass" : "pip fail") : "pip";
      pips.append(el("span", { class: cls, text: r ? `${Math.round(r.accuracy * 100)}` : "", title: r ? `step ${r.step}` : "no eval yet" }));
    }
    pips.append(el("span", { text: `bar ${Math.round(s.threshold * 100)}%` }));
    const card = el("a", { class: "skill", href: s.url, "data-skill": s.id },
      el("img", { class: "px", src: s.icon_url, alt: s.short }),
      el("div", {},
        el("div", { class: "title" }, el("span", { text: `${s.short} · ${s.name}` }),
          el("span", { class: "lvl", text: `${s.level} / ${s.max_level ?? "?"}` })),
        s.waiting
          ? el("div", { class: "sub waiting", "data-waiting": s.id, text: `Not scheduled: ${s.waiting}` })
          : el("div", { class: "sub", text: `${s.evals} evals · next level when the last ${s.window} pass` }),
        pips,
        sparkline(s.sparkline, { width: 230, height: 28, threshold: s.threshold })));
    host.append(card);
  }
}

export function renderAchievements(list) {
  const host = $("achievements");
  $("achv-count").textContent = list.length;
  if (!list.length) { host.innerHTML = `<p class="empty">No deeds yet. Keep training.</p>`; return; }
  host.replaceChildren(...list.map((a) => el("div", { class: "achv", "data-id": a.id },
    el("img", { class: "px", src: "/static/svg/trophy.svg", alt: "" }),
    el("div", {}, el("b", { text: a.name }), el("small", { text: a.description })))));
}

export function chronicle(text) {
  const list = $("chronicle");
  const li = el("li");
  li.innerHTML = `<span>${new Date().toLocaleTimeString()}</span> `;
  li.append(el("b", { text }));
  list.prepend(li);
  while (list.children.length > 60) list.lastChild.remove();
}
