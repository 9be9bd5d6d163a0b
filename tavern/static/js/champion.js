// The Champion board panel: checkpoints ranked by the guild's champion rule (GET /api/champion, the
// watchtower's read model), the champion's card and its last moves. Read-only: the guild moves the
// champion; the Vault room promotes by hand. Also the toast for a `champion.new` event.
import { api, el, fmt, toast } from "./common.js";

const $ = (id) => document.getElementById(id);
const LIMIT = 8; // rows shown; the ranking covers every live checkpoint
const HISTORY = 4;

const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(100 * v)}%`);

function skillCell(v) {
  if (!v) return el("td", { class: "num", text: "–" });
  return el("td", { class: "num", title: `${v.correct}/${v.n} at level ${v.level} (${v.source} eval)`, text: pct(v.accuracy) });
}

function row(r, skills, championName) {
  const tags = el("span", { class: "cb-tags" });
  for (const a of r.aliases) tags.append(el("span", { class: `cb-tag ${a}`, text: a }));
  const tr = el(
    "tr",
    { class: r.name === championName ? "cb-champion" : "", "data-checkpoint": r.name, "data-rank": r.rank ?? "" },
    el("td", { class: "num", text: r.rank ?? "–" }),
    el("td", { class: "cb-name" }, el("span", { text: Number(r.step).toLocaleString() }), tags),
    el("td", { class: "num", text: r.mastered ?? "–" }),
    el("td", { class: "num cb-acc", text: pct(r.accuracy) }),
  );
  for (const s of skills) tr.append(skillCell(r.skills[s]));
  tr.append(el("td", { class: "num", text: fmt(r.val_loss) }));
  tr.title = r.name;
  return tr;
}

export class ChampionBoard {
  constructor() { this.timer = null; }

  async refresh() {
    const b = await api(`/api/champion?limit=${LIMIT}&history=${HISTORY}`);
    this.render(b);
    return b;
  }

  // Bursts (a checkpoint's evals, the move, the achievement) trigger one read.
  refreshSoon() { clearTimeout(this.timer); this.timer = setTimeout(() => this.refresh().catch(() => {}), 300); }

  render(b) {
    const champ = b.champion;
    $("cb-champion-name").textContent = champ ? (champ.name || champ.asset_id) : "none yet";
    $("cb-champion-why").textContent = champ ? `${champ.set_by}: ${champ.reason}` : "the first evaluated checkpoint takes the title";
    $("cb-count").textContent = `${b.evaluated}/${b.count} ranked`;
    $("cb-rule").title = b.rule;
    const head = $("cb-head");
    const cols = [["#"], ["step"], ["lvl", "mastered levels, summed over the skills"], ["acc", "mean accuracy at the training level"],
      ...b.skills.map((s) => [s.toUpperCase(), `${s} accuracy at its training level`]), ["val", "val loss"]];
    head.replaceChildren(...cols.map(([h, title]) => el("th", { text: h, title })));
    const body = $("cb-rows");
    const name = champ ? champ.name : null;
    body.replaceChildren(...b.checkpoints.map((r) => row(r, b.skills, name)));
    if (!b.checkpoints.length) body.append(el("tr", {}, el("td", { colspan: 6 + b.skills.length, class: "empty", text: "No checkpoints yet." })));
    const short = (n) => (n ? n.replace(/-\d{8}-\d{4}$/, "") : "none");
    $("cb-history").replaceChildren(
      ...b.history.map((h) => el("li", { title: h.reason, text: `${short(h.from_name)} → ${h.to_name ? short(h.to_name) : "removed"} · by ${h.by}` })),
    );
    $("champion-panel").dataset.champion = name || "";
  }
}

export function championToast(p) {
  const prev = p.previous ? ` (was ${p.previous})` : "";
  toast("New champion!", `${p.name} at step ${p.step}: accuracy ${pct(p.accuracy)}, val ${fmt(p.val_loss)}${prev}`, {
    kind: "good",
    icon: "/static/svg/trophy.svg",
    key: `champion-${p.name}`,
  });
}
