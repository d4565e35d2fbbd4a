// The drawing, the round trip to /api/predict, the guesses and the bars.
"use strict";

(function () {
  const CS = window.CS;
  const $ = (id) => document.getElementById(id);
  const canvas = $("draw");
  const ctx = canvas.getContext("2d");
  const state = { preprocess: true, drawing: false, last: null, inked: false, inFlight: false, dirty: false, lastSent: 0, rtt: 0 };
  const LIVE_MS = 80;   // while drawing, predict at most this often, and only if the round trip is fast

  // ---- drawing (pointer events: mouse, pen and touch alike) ---------------
  function clearCanvas() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    state.inked = false;
  }

  function point(ev) {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) / r.width) * canvas.width, ((ev.clientY - r.top) / r.height) * canvas.height];
  }

  function stroke(from, to) {
    const eraser = document.querySelector('input[name="tool"]:checked').value === "eraser";
    ctx.strokeStyle = eraser ? "#000" : "#fff";
    ctx.lineWidth = eraser ? 40 : 22;   // ~2.2 px of 28: MNIST's pen width
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    if (!eraser) state.inked = true;
  }

  canvas.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    try { canvas.setPointerCapture(ev.pointerId); } catch (_) { /* synthetic events have no pointer to capture */ }
    state.drawing = true;
    state.last = point(ev);
    stroke(state.last, state.last);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!state.drawing) return;
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    for (const e of events.length ? events : [ev]) {
      const p = point(e);
      stroke(state.last, p);
      state.last = p;
    }
    if (state.rtt < LIVE_MS && performance.now() - state.lastSent > LIVE_MS) predict();
  });
  // After erasing, look again: a canvas erased back to black has nothing to guess.
  function hasInk() {
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) if (data[i] > 0) return true;
    return false;
  }
  const end = () => {
    if (!state.drawing) return;
    state.drawing = false;
    if (document.querySelector('input[name="tool"]:checked').value === "eraser") state.inked = hasInk();
    predict();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  $("clear").addEventListener("click", () => { clearCanvas(); reset(); });

  // ---- the round trip -----------------------------------------------------
  // One request in flight at a time; a drawing that changed meanwhile is sent when it returns.
  async function predict() {
    document.body.dataset.pending = "1";   // tests and tools wait for "0": the answer shown is the last
    if (state.inFlight) { state.dirty = true; return; }
    if (!state.inked) { reset(); document.body.dataset.pending = "0"; return; }
    state.inFlight = true; state.dirty = false;
    const t0 = performance.now();
    state.lastSent = t0;
    try {
      const res = await fetch("/api/predict", {
        method: "POST", headers: { "Content-Type": "application/json" },
        // digits runs get MNIST's centring; "resize" runs (fashion-mnist) see the whole canvas
        body: JSON.stringify({ png: canvas.toDataURL("image/png"), preprocess: state.preprocess }),
      });
      const body = await res.json();
      if (!res.ok) throw new Error(body.detail || res.statusText);
      state.rtt = performance.now() - t0;
      if (state.inked) show(body);
      $("timing").textContent = `round trip ${state.rtt.toFixed(0)} ms`;
    } catch (err) {
      $("timing").textContent = `the server did not answer: ${err.message}`;
    } finally {
      state.inFlight = false;
      if (state.dirty) predict();
      else document.body.dataset.pending = "0";
    }
  }

  function reset() {
    for (const id of ["first", "second"]) { $(id).textContent = "–"; $(`${id}-p`).textContent = ""; }
    document.querySelectorAll(".bar").forEach((b) => setBar(b, 0));
    for (const id of ["fed", "raw"]) $(id).getContext("2d").clearRect(0, 0, 28, 28);
    document.body.classList.remove("has-prediction");
  }

  function setBar(bar, p) {
    bar.dataset.probability = String(p);
    bar.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    bar.querySelector(".val").textContent = `${(p * 100).toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", (p * 100).toFixed(1));
  }

  function show(body) {
    const [a, b] = body.top;
    $("first").textContent = a.label; $("first-p").textContent = `${(a.probability * 100).toFixed(1)}%`;
    $("second").textContent = b.label; $("second-p").textContent = `${(b.probability * 100).toFixed(1)}%`;
    document.querySelectorAll(".bar").forEach((bar, i) => {
      setBar(bar, body.probabilities[i]);
      bar.classList.toggle("best", i === a.index);
    });
    CS.paintFloats($("fed"), body.input);
    CS.paintFloats($("raw"), body.raw);
    CS.net.update(body);
    document.body.classList.add("has-prediction");
  }

  function buildBars(classes) {
    const bars = $("bars");
    bars.replaceChildren();
    const longest = Math.max(...classes.map((c) => c.length));
    bars.style.setProperty("--lab", longest <= 2 ? "1.5em" : `${Math.min(8, longest * 0.6 + 0.5)}em`);
    classes.forEach((label, i) => {
      const bar = CS.el("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-label": `class ${label}`, "data-testid": `prob-bar-${i}`, "data-probability": "0" },
      CS.el("span", { class: "lab", text: label }),
      CS.el("span", { class: "track" }, CS.el("span", { class: "fill" })),
      CS.el("span", { class: "val", text: "0.0%" }));
      bars.append(bar);
    });
  }

  // ---- views and start-up -------------------------------------------------
  document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => { t.classList.toggle("active", t === tab); t.setAttribute("aria-selected", t === tab); });
    document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== tab.dataset.view; });
  }));

  async function start() {
    clearCanvas();
    CS.paintScale($("scale"));
    CS.initArith();
    try {
      const model = await (await fetch("/api/model")).json();
      CS.net.build(model, $("network"), $("toggles"));
      buildBars(model.classes);
      state.preprocess = !model.preprocessing || model.preprocessing.kind !== "resize";
      if (!state.preprocess) $("hint").textContent = "Draw one item filling the square: this network was trained on whole 28×28 pictures.";
      const n = model.layers.filter((l) => l.kind !== "input").length;
      $("model-info").textContent = `${model.model} · ${model.dataset || "?"} · ${n} layers`;
      document.body.dataset.ready = "1";
    } catch (err) {
      $("model-info").textContent = `could not load the model: ${err.message}`;
    }
  }
  start();
})();
