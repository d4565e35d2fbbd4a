// "Convolution arithmetic": output sizes, and the lecture's kernel sliding over a 5x5 image.
"use strict";

(function () {
  const CS = window.CS;
  const $ = (id) => document.getElementById(id);

  // The lecture's example: its first dot product is 4.
  const IMAGE = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]];
  const KERNEL = [[1, 0, 1], [0, 1, 0], [1, 0, 1]];
  const OUT = IMAGE.length - KERNEL.length + 1;

  // ---- output size --------------------------------------------------------
  function fixes(n, f, p, s) {
    const pads = [], strides = [];
    for (let q = 0; q <= Math.max(f, p + s) && pads.length < 3; q++) {
      const r = n - f + 2 * q;
      if (q !== p && r >= 0 && r % s === 0) pads.push(`padding ${q} gives ${r / s + 1}×${r / s + 1}`);
    }
    const r = n - f + 2 * p;
    for (let t = 1; t <= Math.min(r, 8); t++) if (t !== s && r % t === 0) strides.push(`stride ${t} gives ${r / t + 1}`);
    return { pads, strides };
  }

  CS.outputSize = function (n, f, p, s) {
    const r = n - f + 2 * p;
    const text = `(${n} − ${f} + 2·${p}) / ${s} + 1 = ${r} / ${s} + 1`;
    if (r < 0) {
      const need = Math.ceil((f - n) / 2);
      return { ok: false, text: `${text}: the kernel does not fit`, why: `A ${f}×${f} kernel is larger than the ` +
        `${n + 2 * p}×${n + 2 * p} padded input. Use padding ${need} or more, or a kernel of at most ${n + 2 * p}.` };
    }
    const out = r / s + 1;
    if (Number.isInteger(out)) {
      return { ok: true, out, text: `${text} = ${out}`,
        why: `The kernel fits ${plural(out, "time", "times")} along each side: output ${out}×${out}.` };
    }
    const fx = fixes(n, f, p, s);
    const options = [...fx.pads, ...fx.strides].join("; ") || "change N or F";
    return { ok: false, out, text: `${text} = ${out.toFixed(2)}: not a whole number`,
      why: `${r} is not a multiple of the stride ${s}: after ${plural(Math.floor(r / s), "step", "steps")} the kernel would hang ` +
        `${plural(s - (r % s), "pixel", "pixels")} off the edge, so ${plural(r % s, "column is", "columns are")} never the start of a window ` +
        `(PyTorch floors to ${Math.floor(out)} and ignores them). What fits: ${options}.` };
  }

  // The padded input (padding shaded), a dot where each window's centre lands (the output
  // grid), the first window in orange, the last in blue, and never-covered cells in red.
  function drawGrid(n, f, p, s) {
    const canvas = $("ar-grid");
    const m = n + 2 * p;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (m > 40) { ctx.fillStyle = "#666"; ctx.font = "14px system-ui"; ctx.fillText(`(${m}×${m} is too big to draw)`, 10, 20); return; }
    const c = Math.floor(canvas.width / m);
    for (let y = 0; y < m; y++) for (let x = 0; x < m; x++) {
      const pad = y < p || x < p || y >= p + n || x >= p + n;
      ctx.fillStyle = pad ? "#d9dde3" : "#f7f8fa";
      ctx.fillRect(x * c, y * c, c - 1, c - 1);
    }
    if (f > m) return;
    const steps = Math.floor((m - f) / s) + 1;
    const used = (steps - 1) * s + f;
    ctx.fillStyle = "rgba(224, 49, 49, 0.35)";
    if (used < m) { ctx.fillRect(used * c, 0, (m - used) * c, m * c); ctx.fillRect(0, used * c, used * c, (m - used) * c); }
    ctx.fillStyle = "#1d2330";
    for (let i = 0; i < steps; i++) for (let j = 0; j < steps; j++) {
      ctx.beginPath();
      ctx.arc((j * s + f / 2) * c, (i * s + f / 2) * c, Math.max(2, c / 7), 0, 2 * Math.PI);
      ctx.fill();
    }
    const last = (steps - 1) * s * c;
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(25, 113, 194, 0.9)";
    ctx.strokeRect(last + 1.5, last + 1.5, f * c - 3, f * c - 3);
    ctx.strokeStyle = "#e8590c";
    ctx.strokeRect(1.5, 1.5, f * c - 3, f * c - 3);
  }

  const NAMES = { "ar-n": "input N", "ar-p": "padding P", "ar-f": "kernel F", "ar-s": "stride S" };
  // A field's whole number, or the reason it is not one we can use (shown, never replaced).
  function read(id) {
    const el = $(id);
    const raw = el.value.trim();
    const lo = Number(el.min), hi = Number(el.max);
    let why = null;
    if (raw === "" || el.validity.badInput) why = `${NAMES[id]} is empty or not a number`;
    else if (!Number.isInteger(Number(raw))) why = `${NAMES[id]} must be a whole number, not ${raw}`;
    else if (Number(raw) < lo) why = `${NAMES[id]} must be at least ${lo}, not ${raw}`;
    else if (Number(raw) > hi) why = `${NAMES[id]} can be at most ${hi} here, not ${raw}`;
    el.classList.toggle("invalid", !!why);
    el.setAttribute("aria-invalid", why ? "true" : "false");
    el.title = why || "";
    return { value: Number(raw), why };
  }

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  CS.plural = plural;

  function updateArith() {
    const fields = ["ar-n", "ar-p", "ar-f", "ar-s"].map(read);
    const bad = fields.filter((f) => f.why);
    if (bad.length) {
      $("ar-result").textContent = "cannot compute: " + bad.map((f) => f.why).join("; ");
      $("ar-result").classList.add("bad");
      $("ar-why").textContent = "Fix the field marked in red; nothing is computed from a value you did not type.";
      $("ar-grid").getContext("2d").clearRect(0, 0, $("ar-grid").width, $("ar-grid").height);
      return;
    }
    const [n, p, f, s] = fields.map((x) => x.value);
    const res = CS.outputSize(n, f, p, s);
    $("ar-result").textContent = res.text;
    $("ar-result").classList.toggle("bad", !res.ok);
    $("ar-why").textContent = res.why;
    drawGrid(n, f, p, s);
  }

  // ---- the sliding kernel -------------------------------------------------
  let step = 0, timer = null;
  function cells(tableId, rows) {
    const t = $(tableId);
    t.replaceChildren(...rows.map((r) => CS.el("tr", {}, ...r.map((v) => CS.el("td", { text: v === null ? "" : String(v) })))));
    return t;
  }

  function dot(oy, ox) {
    const terms = [];
    let sum = 0;
    KERNEL.forEach((row, i) => row.forEach((k, j) => {
      const v = IMAGE[oy + i][ox + j];
      terms.push(`${v}·${k}`);
      sum += v * k;
    }));
    return { terms, sum };
  }

  function renderSlide() {
    const out = Array.from({ length: OUT }, () => Array(OUT).fill(null));
    for (let i = 0; i < step; i++) out[Math.floor(i / OUT)][i % OUT] = dot(Math.floor(i / OUT), i % OUT).sum;
    cells("sl-output", out);
    const img = cells("sl-image", IMAGE);
    if (step === 0) { $("sl-dot").textContent = "Press Step: the kernel starts at the top left."; return; }
    const oy = Math.floor((step - 1) / OUT), ox = (step - 1) % OUT;
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) img.rows[oy + i].cells[ox + j].classList.add("win");
    $("sl-output").rows[oy].cells[ox].classList.add("win");
    const d = dot(oy, ox);
    $("sl-dot").textContent = `output (${oy}, ${ox}) = ${d.terms.join(" + ")} = ${d.sum}`;
  }

  function go(delta) { step = Math.min(OUT * OUT, Math.max(0, step + delta)); renderSlide(); }

  function play() {
    if (timer) { clearInterval(timer); timer = null; $("sl-play").textContent = "▶ Play"; return; }
    if (step >= OUT * OUT) step = 0;
    $("sl-play").textContent = "❚❚ Pause";
    timer = setInterval(() => { go(1); if (step >= OUT * OUT) play(); }, 900);
  }

  CS.initArith = function () {
    for (const id of ["ar-n", "ar-p", "ar-f", "ar-s"]) $(id).addEventListener("input", updateArith);
    cells("sl-kernel", KERNEL);
    $("sl-next").addEventListener("click", () => go(1));
    $("sl-prev").addEventListener("click", () => go(-1));
    $("sl-reset").addEventListener("click", () => { step = 0; renderSlide(); });
    $("sl-play").addEventListener("click", play);
    updateArith();
    renderSlide();
  };
})();
