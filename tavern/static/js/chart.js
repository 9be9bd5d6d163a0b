// The loss chart: uPlot (canvas, fast enough for tens of thousands of points) fed by the server's
// min/max-downsampled series plus live step events. Smoothing is an EMA over the train loss, done
// here so the slider is instant; the raw series stays faint behind it.
import uPlot from "/vendor/uPlot.esm.js";
import { api } from "./common.js";

const MAX_POINTS = 2000;

export class LossChart {
  constructor(host, { onInfo } = {}) {
    this.host = host;
    this.onInfo = onInfo || (() => {});
    this.axis = "step";
    this.alpha = 0.6;
    this.x = []; this.train = []; this.val = [];
    this.lastStep = -Infinity; this.lastTs = -Infinity;
    this.plot = null;
    this.pending = false;
    this.appended = 0;
  }

  async load(axis = this.axis) {
    this.axis = axis;
    const m = await api(`/api/metrics?max_points=${MAX_POINTS}&axis=${axis}`);
    // A step event that carries val_loss is one point with both values, as it is when it arrives live.
    const byEvent = new Map();
    const pts = [];
    for (const [step, ts, v] of m.train) { const p = { step, ts, train: v, val: null }; byEvent.set(`${step}|${ts}`, p); pts.push(p); }
    for (const [step, ts, v] of m.val) {
      const same = byEvent.get(`${step}|${ts}`);
      if (same) same.val = v; else pts.push({ step, ts, train: null, val: v });
    }
    const key = axis === "time" ? "ts" : "step";
    pts.sort((a, b) => a[key] - b[key]);
    this.x = pts.map((p) => p[key]); this.train = pts.map((p) => p.train); this.val = pts.map((p) => p.val);
    this.lastStep = Math.max(-Infinity, ...m.train.map((p) => p[0]));
    this.lastTs = Math.max(-Infinity, ...m.train.map((p) => p[1]));
    this.appended = 0;
    this.onInfo(`${m.total_steps.toLocaleString()} step events${m.downsampled ? ` · showing ${m.train.length} (min/max buckets)` : ""}`);
    this.build();
  }

  smooth() {
    const out = new Array(this.train.length);
    let ema = null;
    for (let i = 0; i < this.train.length; i++) {
      const v = this.train[i];
      if (v === null || v === undefined) { out[i] = null; continue; }
      ema = ema === null ? v : this.alpha * ema + (1 - this.alpha) * v;
      out[i] = ema;
    }
    return out;
  }

  data() { return [this.x, this.train, this.smooth(), this.val]; }

  build() {
    this.plot?.destroy();
    const width = Math.max(300, this.host.clientWidth - 4);
    this.plot = new uPlot({
      width, height: 300,
      scales: { x: { time: this.axis === "time" } },
      axes: [
        { stroke: "#b9a98a", grid: { stroke: "#2d2239" }, label: this.axis === "time" ? "wall time" : "step" },
        { stroke: "#b9a98a", grid: { stroke: "#2d2239" }, label: "loss" },
      ],
      series: [
        { label: this.axis === "time" ? "time" : "step" },
        { label: "train (raw)", stroke: "rgba(224,83,61,0.35)", width: 1, spanGaps: true },
        { label: "train", stroke: "#e0533d", width: 2, spanGaps: true },
        { label: "val", stroke: "#4aa3df", width: 2, spanGaps: true, points: { show: true, size: 6, fill: "#4aa3df" } },
      ],
    }, this.data(), this.host);
    this.host.dataset.points = String(this.x.length);
    new ResizeObserver(() => this.plot?.setSize({ width: Math.max(300, this.host.clientWidth - 4), height: 300 })).observe(this.host);
  }

  setSmoothing(alpha) { this.alpha = alpha; this.redraw(); }

  addStep(p, ts) {
    if (p.loss === undefined || p.loss === null) return;
    if (p.step !== undefined && p.step <= this.lastStep) return;  // already in the downsampled history
    this.lastStep = p.step ?? this.lastStep; this.lastTs = ts;
    this.x.push(this.axis === "time" ? ts : p.step); this.train.push(p.loss);
    this.val.push(p.val_loss ?? null);
    this.appended++;
    if (this.appended > MAX_POINTS) { this.load(); return; }  // let the server downsample again
    this.redraw();
  }

  addVal(p, ts) {
    if (p.val_loss === undefined || p.val_loss === null) return;
    this.x.push(this.axis === "time" ? ts : (p.step ?? this.lastStep)); this.train.push(null); this.val.push(p.val_loss);
    this.redraw();
  }

  redraw() {
    if (this.pending || !this.plot) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.plot.setData(this.data());
      this.host.dataset.points = String(this.x.length);
    });
  }
}
