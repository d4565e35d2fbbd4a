// The Train tab: start, pause, resume and stop a training run by the server in its own
// process; watch the loss and top-1 curves, conv1's kernels and a strip of test images.
// Every request goes through CS.engine.train (engine.js); progress arrives as server-sent events.
// The number fields take their ranges from /api/train/options (the server's limits.LIMITS), and
// the data choices are the server's: its named datasets and the folders it was started with.
"use strict";
(function () {
  const engine = window.CS && window.CS.engine && window.CS.engine.train;
  if (!engine) return;  // an in-browser engine cannot train: no Train tab

  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  };

  // ---- the tab and its section ---------------------------------------------------------
  const tab = el("button", { role: "tab", class: "tab", "data-view": "view-train", "data-testid": "train-tab",
    "aria-selected": "false", type: "button", text: "Train" });
  const section = el("section", { id: "view-train", class: "view train-view" });
  section.hidden = true;
  section.innerHTML = `
  <div class="card train-controls">
    <h2>Train a network and watch it learn</h2>
    <div class="controls">
      <label>model <select data-testid="train-model" id="tr-model"></select></label>
      <label>data <select data-testid="train-data" id="tr-data"></select></label>
      <label>or folder: <input type="text" data-testid="train-folder" id="tr-folder" placeholder="one of --train-folder" size="22"></label>
      <label>recipe <select data-testid="train-recipe" id="tr-recipe"><option value="">none</option></select></label>
      <label>epochs <input type="number" data-testid="train-epochs" id="tr-epochs" value="1"></label>
      <label>peak lr <input type="number" data-testid="train-lr" id="tr-lr" step="any" placeholder="default"></label>
      <label>pace <select data-testid="train-pace" id="tr-pace">
        <option value="0">full speed</option><option value="20">slow (20 ms a step)</option>
        <option value="100">slower (100 ms a step)</option></select></label>
    </div>
    <div class="controls">
      <button type="button" data-testid="train-start" id="tr-start">Start</button>
      <button type="button" data-testid="train-pause" id="tr-pause">Pause</button>
      <button type="button" data-testid="train-resume" id="tr-resume">Resume</button>
      <button type="button" data-testid="train-stop" id="tr-stop">Stop</button>
    </div>
    <p class="train-status" data-testid="train-status" id="tr-status">idle</p>
    <p class="train-error" data-testid="train-error" id="tr-error" role="alert"></p>
  </div>
  <div class="train-grid">
    <div class="card"><h3>loss (cross-entropy)</h3><canvas id="tr-loss" width="420" height="220" data-testid="train-loss"></canvas>
      <p class="hint">grey: each step's training loss · blue: train images · orange: validation images (eval mode)</p></div>
    <div class="card"><h3>top-1 accuracy</h3><canvas id="tr-acc" width="420" height="220" data-testid="train-acc"></canvas>
      <p class="hint">blue: train images · orange: validation images</p></div>
    <div class="card"><h3 id="tr-kernels-title">first conv layer's kernels</h3><div id="tr-kernels" class="train-kernels" data-testid="train-kernels"></div></div>
    <div class="card"><h3>predictions on fixed test images</h3><div id="tr-strip" class="train-strip" data-testid="train-strip"></div></div>
  </div>`;

  const style = el("style", { text: `
    .train-view .controls { display: flex; flex-wrap: wrap; gap: .6rem; align-items: center; margin: .4rem 0; }
    .train-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
    .train-grid canvas { width: 100%; height: auto; }
    .train-status { font-family: ui-monospace, monospace; font-size: .85rem; }
    .train-error { color: var(--bad, #c92a2a); font-size: .85rem; min-height: 1em; }
    .train-kernels, .train-strip { display: flex; flex-wrap: wrap; gap: 4px; }
    .train-kernels canvas { width: 40px; height: 40px; image-rendering: pixelated; border: 1px solid #ddd; }
    .train-strip figure { margin: 0; text-align: center; font-size: .72rem; }
    .train-strip canvas { width: 56px; height: 56px; image-rendering: pixelated; display: block; }
    .train-strip .right { color: var(--good, #2b8a3e); } .train-strip .wrong { color: var(--bad, #c92a2a); }` });

  function mount() {
    document.head.append(style);
    const nav = document.querySelector("nav.tabs") || document.body;
    nav.append(tab);
    (document.querySelector("main") || document.body).append(section);
    tab.addEventListener("click", () => {
      document.querySelectorAll(".tab").forEach((t) => { t.classList.toggle("active", t === tab); t.setAttribute("aria-selected", t === tab); });
      document.querySelectorAll(".view").forEach((v) => { v.hidden = v !== section; });
    });
    document.querySelectorAll(".tab").forEach((t) => {
      if (t !== tab) t.addEventListener("click", () => { section.hidden = true; tab.classList.remove("active"); });
    });
  }

  // ---- state and drawing -----------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const S = { steps: 1, classes: [], strip: [], stripLabels: [], stepLoss: [], probes: [], epochs: [], updates: 0 };
  const at = (e) => e.epoch * S.steps + e.step;

  function plot(canvas, series, yMin, yMax) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, L = 36, B = 20;
    ctx.clearRect(0, 0, W, H);
    const pts = series.flatMap((s) => s.points);
    if (!pts.length) return;
    const xMax = Math.max(1, ...pts.map((p) => p[0]));
    const ys = pts.map((p) => p[1]).filter((v) => v !== null && isFinite(v));
    const lo = yMin ?? Math.min(...ys), hi = yMax ?? Math.max(...ys, lo + 1e-6);
    const X = (x) => L + (W - L - 6) * x / xMax, Y = (y) => H - B - (H - B - 6) * (y - lo) / (hi - lo || 1);
    ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#667085"; ctx.font = "10px sans-serif";
    ctx.beginPath(); ctx.moveTo(L, 4); ctx.lineTo(L, H - B); ctx.lineTo(W - 4, H - B); ctx.stroke();
    ctx.fillText(hi.toFixed(2), 2, 12); ctx.fillText(lo.toFixed(2), 2, H - B);
    ctx.fillText(`step ${xMax}`, W - 60, H - 6);
    for (const s of series) {
      ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5; ctx.beginPath();
      s.points.filter((p) => p[1] !== null).forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p[0]), Y(p[1])));
      ctx.stroke();
    }
  }

  function redraw() {
    plot($("tr-loss"), [
      { color: "#bbb", width: 1, points: S.stepLoss },
      { color: "#1971c2", points: S.probes.map((p) => [at(p), p.train_loss]) },
      { color: "#e8590c", points: S.probes.map((p) => [at(p), p.val_loss]) },
    ]);
    plot($("tr-acc"), [
      { color: "#1971c2", points: S.probes.map((p) => [at(p), p.train_top1]) },
      { color: "#e8590c", points: S.probes.map((p) => [at(p), p.val_top1]) },
    ], 0, 1);
  }

  function greyCanvas(values, w, h, lo, hi) {
    const c = el("canvas", { width: w, height: h });
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      const v = Math.round(255 * (values[i] - lo) / ((hi - lo) || 1));
      img.data.set([v, v, v, 255], i * 4);
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  function drawKernels(k) {
    if (!k) return;
    const [n, cin, kh, kw] = k.shape;
    const box = $("tr-kernels");
    box.replaceChildren();
    $("tr-kernels-title").textContent = `${k.layer}: ${n} kernels of ${kh}×${kw} (channel 0)`;
    for (let o = 0; o < n; o++) {
      const vals = k.data.slice(o * cin * kh * kw, o * cin * kh * kw + kh * kw);
      const m = Math.max(...vals.map(Math.abs)) || 1;
      box.append(greyCanvas(vals, kw, kh, -m, m));
    }
  }

  function drawStrip(preds) {
    const box = $("tr-strip");
    box.replaceChildren();
    S.strip.forEach((img, i) => {
      const h = img.length, w = img[0].length;
      const p = preds && preds[i];
      const cls = p ? (p.label === S.stripLabels[i] ? "right" : "wrong") : "";
      box.append(el("figure", { "data-testid": `train-strip-${i}` }, greyCanvas(img.flat(), w, h, 0, 255),
        el("figcaption", { class: cls, text: p ? `${p.label} ${(100 * p.probability).toFixed(0)}%` : S.stripLabels[i] })));
    });
  }

  function setStatus(text) { $("tr-status").textContent = text; }

  function onEvent(e) {
    S.updates += 1;
    if (e.type === "hello") {
      S.steps = e.steps; S.classes = e.classes; S.strip = e.strip; S.stripLabels = e.strip_labels;
      drawStrip(null);
    } else if (e.type === "step") {
      S.stepLoss.push([at(e), e.loss]);
      S.lastLoss = e.loss;
      setStatus(`running · update ${S.updates} · epoch ${e.epoch + 1} step ${e.step}/${e.steps} · loss ${e.loss.toFixed(4)} · lr ${e.lr.toPrecision(3)}`);
      redraw();
    } else if (e.type === "probe") {
      S.probes.push(e);
      drawKernels(e.kernels); drawStrip(e.strip); redraw();
    } else if (e.type === "epoch") {
      S.epochs.push(e);
      setStatus(`epoch ${e.epoch} done · update ${S.updates} · val top-1 ${(100 * e.val_top1).toFixed(2)}% · val loss ${e.val_loss.toFixed(4)}`);
    } else if (e.type === "state") {
      if (e.state === "error") $("tr-error").textContent = e.message;
      setStatus(`${e.state} · update ${S.updates}${e.message ? " · " + e.message : ""}`);
      section.dataset.state = e.state;
    } else if (e.type === "opened") {
      section.dataset.opened = e.run;
      setStatus(`done · update ${S.updates} · ${e.run} is open in the explorer`);
      if (window.CS.changedModel && e.version != null) window.CS.changedModel({ version: e.version });  // the new network's graph, at once
    } else if (e.type === "error") {
      $("tr-error").textContent = e.message;
    }
  }

  let source = null;
  function listen() {
    if (!source) source = engine.events(onEvent, (s) => { section.dataset.state = s.state; });
  }

  async function control(action, body) {
    $("tr-error").textContent = "";
    try {
      section.dataset.state = (await engine.control(action, body || {})).state;
    } catch (err) {
      $("tr-error").textContent = err.message || `${action} failed`;
    }
  }

  // a number field's min/max/step from the server's range ({kind, min, max, min_open, max_open, text})
  function applyRange(input, range) {
    if (!range) return;
    if (range.min !== null) input.min = String(range.min);
    if (range.max !== null) input.max = String(range.max);
    input.step = range.kind === "int" ? "1" : "any";
    input.title = range.text;
  }

  async function init() {
    mount();
    const opts = await engine.options();
    for (const m of opts.models) $("tr-model").append(el("option", { value: m.value, text: m.label }));
    for (const d of opts.datasets) $("tr-data").append(el("option", { value: d, text: d }));
    for (const f of opts.folders || []) $("tr-data").append(el("option", { value: "folder:" + f, text: "folder: " + f }));
    applyRange($("tr-epochs"), opts.ranges && opts.ranges.epochs);
    applyRange($("tr-lr"), opts.ranges && opts.ranges.lr);
    for (const r of opts.recipes) $("tr-recipe").append(el("option", { value: r, text: r }));
    section.dataset.state = opts.status.state;
    $("tr-start").addEventListener("click", () => {
      S.stepLoss = []; S.probes = []; S.epochs = [];
      const folder = $("tr-folder").value.trim();
      const body = { model: $("tr-model").value, data: folder ? "folder:" + folder : $("tr-data").value,
        epochs: Number($("tr-epochs").value), pace_ms: Number($("tr-pace").value) };
      if ($("tr-recipe").value) body.recipe = $("tr-recipe").value;
      if ($("tr-lr").value) body.lr = Number($("tr-lr").value);
      listen();
      control("start", body);
    });
    $("tr-pause").addEventListener("click", () => control("pause"));
    $("tr-resume").addEventListener("click", () => { listen(); control("resume"); });
    $("tr-stop").addEventListener("click", () => control("stop"));
    if (opts.status.state !== "idle") listen();
    window.CS = window.CS || {};
    window.CS.train = S;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
