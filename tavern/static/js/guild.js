// The guild page of one skill: its card and the eval history, each problem with DIO's answer.
import { api, el, setConnected, sparkline, toast } from "./common.js";

const skill = document.getElementById("guild-skill").dataset.skill;

function evalBlock(e) {
  const rows = (e.items || []).map((it) => el("tr", {},
    el("td", {}, el("pre", { class: "cell", text: it.prompt ?? "" })),
    el("td", {}, el("pre", { class: "cell", text: it.expected ?? "" })),
    el("td", {}, el("pre", { class: "cell", text: it.answer ?? it.response ?? "" })),
    el("td", { class: it.correct ? "ok" : "no", text: it.correct ? "✔ right" : "✘ wrong" })));
  const table = el("table", { class: "evals" },
    el("thead", {}, el("tr", {}, ...["Problem", "Expected", "DIO's answer", "Verdict"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
  const when = new Date(e.ts * 1000).toLocaleString();
  return el("details", { class: "eval", "data-eval": e.id },
    el("summary", { text: `L${e.level} · step ${e.step} · ${e.correct}/${e.n} (${Math.round(e.accuracy * 100)}%) · ${when}` }),
    rows.length ? table : el("p", { class: "empty", text: "no items recorded" }));
}

async function boot() {
  setConnected(true, "guild records");
  try {
    const data = await api(`/api/skills/${encodeURIComponent(skill)}/evals`);
    const s = data.skill;
    document.getElementById("guild-title").firstChild.textContent = `Guild · ${s.short} · ${s.name} `;
    document.getElementById("skill-card").replaceChildren(el("div", { class: "skill" },
      el("img", { class: "px", src: s.icon_url, alt: s.short }),
      el("div", {},
        el("div", { class: "title" }, el("span", { text: s.description || s.name }), el("span", { class: "lvl", text: `level ${s.level} / ${s.max_level ?? "?"}` })),
        el("div", { class: "sub", text: `${s.evals} evals · working on level ${s.working_level} · bar ${Math.round(s.threshold * 100)}% over ${s.window}` }),
        s.waiting ? el("div", { class: "sub waiting", "data-waiting": s.id, text: `Not scheduled: ${s.waiting}` }) : null,
        sparkline(s.sparkline, { width: 400, height: 40, threshold: s.threshold }))));
    const list = document.getElementById("eval-list");
    list.replaceChildren(...(data.evals.length ? data.evals.map(evalBlock) : [el("p", { class: "empty", text: "No evals yet." })]));
    list.querySelector("details")?.setAttribute("open", "");
  } catch (err) {
    toast("Unknown skill", err.message, { kind: "bad" });
    document.getElementById("eval-list").replaceChildren(el("p", { class: "empty", text: err.message }));
  }
}
boot();
