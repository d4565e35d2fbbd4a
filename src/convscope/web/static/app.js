// The drawing, the round trip to the network (through engine.js), the guesses and the bars.
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
    // digits runs get MNIST's centring; "resize" runs (fashion-mnist) see the whole canvas
    await send({ png: canvas.toDataURL("image/png"), preprocess: state.preprocess }, () => state.inked);
  }

  async function send(request, stillWanted = () => true) {
    document.body.dataset.pending = "1";
    state.inFlight = true;
    const t0 = performance.now();
    state.lastSent = t0;
    try {
      const body = await CS.engine.predict(request);
      state.rtt = performance.now() - t0;
      if (stillWanted()) await show(body);
      $("timing").textContent = `round trip ${state.rtt.toFixed(0)} ms`;
      $("input-error").textContent = "";
    } catch (err) {
      $("timing").textContent = `the server did not answer: ${err.message}`;
      if (!request.png) $("input-error").textContent = err.message;
    } finally {
      state.inFlight = false;
      if (state.dirty) predict();
      else document.body.dataset.pending = "0";
    }
  }

  // ---- files: upload, drag and drop, paste ----------------------------------
  function sendFile(file) {
    if (!file) return;
    if (!/^image\//.test(file.type)) { $("input-error").textContent = `${file.name} is not an image file`; return; }
    const reader = new FileReader();
    reader.onload = () => { state.inked = false; clearCanvas(); send({ file: reader.result }); };
    reader.readAsDataURL(file);
  }
  $("upload").addEventListener("change", (ev) => sendFile(ev.target.files[0]));
  const drop = $("drop-zone");
  for (const t of ["dragenter", "dragover"]) drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  for (const t of ["dragleave", "drop"]) drop.addEventListener(t, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); sendFile(ev.dataTransfer.files[0]); });
  document.addEventListener("paste", (ev) => {
    const item = [...(ev.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) sendFile(item.getAsFile());
  });

  // ---- why this class: Grad-CAM over the input ----------------------------------
  let camRank = null;
  async function showCam(rank) {
    const overlay = CS.net.views.input.cam;
    const buttons = [$("gradcam-first"), $("gradcam-second")];
    if (rank === null || !CS.net.response) {
      camRank = null; overlay.hidden = true; $("gradcam-note").textContent = "";
      buttons.forEach((b) => b.setAttribute("aria-pressed", "false"));
      return;
    }
    camRank = rank;
    buttons.forEach((b, i) => b.setAttribute("aria-pressed", String(i === rank)));
    $("gradcam-note").textContent = "computing…";
    try {
      const cam = await CS.engine.gradcam({ input: CS.net.response.input_id, rank });
      if (await CS.changedModel(cam)) { $("gradcam-note").textContent = "the model changed: feed the image again"; return; }
      const [h, w] = cam.shape;
      const bin = atob(cam.data);
      const heat = CS.el("canvas", { width: w, height: h });
      const ctx = heat.getContext("2d");
      const img = ctx.createImageData(w, h);
      for (let i = 0; i < w * h; i++) {
        const v = bin.charCodeAt(i);
        img.data[i * 4] = 255; img.data[i * 4 + 1] = Math.round(160 * (1 - v / 255)); img.data[i * 4 + 2] = 0;
        img.data[i * 4 + 3] = Math.round(v * 0.7);
      }
      ctx.putImageData(img, 0, 0);
      overlay.src = heat.toDataURL("image/png");
      overlay.hidden = false;
      overlay.dataset.label = cam.label;
      $("gradcam-note").textContent = `Grad-CAM for “${cam.label}” at ${cam.layer}: orange where the evidence for it is (see the input layer)`;
    } catch (err) { $("gradcam-note").textContent = err.message; }
  }
  $("gradcam-first").addEventListener("click", () => showCam(camRank === 0 ? null : 0));
  $("gradcam-second").addEventListener("click", () => showCam(camRank === 1 ? null : 1));

  // ---- samples from the run's test split ------------------------------------
  async function loadSamples() {
    const box = $("samples");
    const wrong = $("samples-wrong").checked;
    try {
      const page = await CS.engine.samples({ limit: 15, wrong: wrong ? 1 : 0 });
      box.replaceChildren(...page.samples.map((s, i) => {
        const b = CS.el("button", { type: "button", class: "sample", "data-testid": `sample-${i}`,
          title: `test image ${s.index}: ${s.label}` + (s.predicted_label ? `, read as ${s.predicted_label}` : "") },
        CS.el("img", { src: s.png, alt: `test image ${s.index}, a ${s.label}` }),
        CS.el("span", { text: s.predicted_label ? `${s.label} → ${s.predicted_label}` : s.label }));
        b.addEventListener("click", () => { state.inked = false; clearCanvas(); send({ sample: s.index }); });
        return b;
      }));
      $("samples-info").textContent = `${page.total} ${wrong ? "misclassified " : ""}${page.split} image${page.total === 1 ? "" : "s"}` +
        (wrong ? ` (of the first ${page.evaluated} evaluated)` : "") + "; click one to feed it";
    } catch (err) {
      box.replaceChildren();
      $("samples-info").textContent = err.message;
    }
  }
  $("samples-wrong").addEventListener("change", loadSamples);

  function reset() {
    for (const id of ["first", "second"]) { $(id).textContent = "–"; $(`${id}-p`).textContent = ""; }
    document.querySelectorAll(".bar").forEach((b) => setBar(b, 0));
    for (const id of ["fed", "raw"]) $(id).getContext("2d").clearRect(0, 0, $(id).width, $(id).height);
    $("warnings").replaceChildren();
    document.body.classList.remove("has-prediction");
  }

  function setBar(bar, p) {
    bar.dataset.probability = String(p);
    bar.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    bar.querySelector(".val").textContent = `${(p * 100).toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", (p * 100).toFixed(1));
  }

  // The server's model changed (the Train tab swapped a run in): its graph, kernels, header
  // and bars are loaded again before an answer of the new model is drawn on them.
  let reloading = null;
  CS.changedModel = async function (answer) {
    if (answer.version === undefined || !CS.net.model || answer.version === CS.net.model.version) return false;
    reloading = reloading || loadModel().then(() => { showCam(null); loadSamples(); }).finally(() => { reloading = null; });
    await reloading;
    return true;
  };

  async function show(body) {
    if (await CS.changedModel(body) && body.version !== CS.net.model.version) return;  // newer still: the next answer
    const [a, b] = body.top;
    $("first").textContent = a.label; $("first-p").textContent = `${(a.probability * 100).toFixed(1)}%`;
    $("second").textContent = b.label; $("second-p").textContent = `${(b.probability * 100).toFixed(1)}%`;
    document.querySelectorAll(".bar").forEach((bar, i) => {
      setBar(bar, body.probabilities[i]);
      bar.classList.toggle("best", i === a.index);
    });
    CS.net.update(body);
    scaleText();
    if (camRank !== null) showCam(camRank);
    const inp = CS.net.views.input.canvases[0];
    const fed = $("fed");
    fed.width = inp.width; fed.height = inp.height;
    fed.getContext("2d").drawImage(inp, 0, 0);
    if (body.raw) CS.paintFloats($("raw"), body.raw);
    $("raw-fig").hidden = !body.raw;
    const warn = (body.warnings || []).map((w) => CS.el("li", { text: w }));
    $("warnings").replaceChildren(...warn);
    $("trust").hidden = !warn.length;
    if (body.sample) $("timing").textContent += ` · test image ${body.sample.index}, truly ${body.sample.label}`;
    document.body.classList.add("has-prediction");
  }

  function buildBars(classes) {
    const bars = $("bars");
    bars.replaceChildren();
    const longest = Math.max(...classes.map((c) => c.length));
    bars.style.setProperty("--lab", longest <= 2 ? "1.5em" : `${Math.min(11, longest * 0.62 + 0.6)}em`);
    if (classes.length > 20) bars.classList.add("many");
    classes.forEach((label, i) => {
      const bar = CS.el("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-label": `class ${label}`, "data-testid": `prob-bar-${i}`, "data-probability": "0" },
      CS.el("span", { class: "lab", text: label, title: label }),
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

  // the model description (engine.model()): the network, its bars, the drawing card and the header, all from the server's facts
  async function loadModel() {
    const model = await CS.engine.model();
    CS.net.build(model, $("network"), $("toggles"), $("graph"));
    CS.net.response = null;
    CS.net.pinned = null;
    buildBars(model.classes);
    const pre = model.preprocessing || {};
    const [c, h, w] = model.input_size;
    state.preprocess = pre.kind !== "resize";
    const digits = model.digits === true;  // the server says how its inputs are prepared
    $("draw-card").hidden = c !== 1;  // an RGB network is shown photos, not drawings
    $("draw-title").textContent = digits ? "Draw your number here" : "Draw an item here";
    $("hint").textContent = digits ? "Draw one digit, big or small, anywhere: it is centred the way MNIST was."
      : `Draw one item filling the square: this network was trained on whole ${h}×${w} pictures.`;
    $("fed-caption").textContent = digits && state.preprocess
      ? `fed to the network: ink box scaled into 20×20, centred by centre of mass in ${h}×${w}`
      : `fed to the network: the whole image resized to ${h}×${w}` + (c === 3 ? " (RGB)" : "");
    const n = model.layers.filter((l) => l.kind !== "input").length;
    const rand = model.random_weights ? " · RANDOM WEIGHTS: untrained, its answers mean nothing" : "";
    $("model-info").textContent = `${model.model} · ${model.dataset || (model.random_weights ? "no run" : model.origin) || "?"} · ${c}×${h}×${w} · ${n} layers${rand}`;
    $("model-info").classList.toggle("random", !!model.random_weights);
    $("graph-note").textContent = model.graph_note || "";
    document.body.dataset.modelVersion = String(model.version);
    document.dispatchEvent(new CustomEvent("cs:model", { detail: model }));  // units.js forgets the old layers
    return model;
  }

  async function start() {
    clearCanvas();
    CS.paintScale($("scale"));
    CS.initArith();
    $("colour-mode").addEventListener("change", (ev) => { CS.net.setMode(ev.target.value); scaleText(); });
    try {
      await loadModel();
      // an engine that cannot compute Grad-CAM (a static site without its gradient graph) says why
      const noCam = CS.engine.gradcamUnavailable ? await CS.engine.gradcamUnavailable() : null;
      if (noCam) {
        ["gradcam-first", "gradcam-second"].forEach((id) => { $(id).disabled = true; });
        $("gradcam-note").textContent = noCam;
      }
      document.body.dataset.ready = "1";
      loadSamples();
    } catch (err) {
      $("model-info").textContent = `could not load the model: ${err.message}`;
    }
  }

  function scaleText() {
    const mode = $("colour-mode").value;
    const r = CS.net.response;
    $("scale-note").textContent = mode === "map" ? "each map coloured from its own minimum to its own maximum"
      : mode === "layer" ? "every map of a layer on its layer's scale (see each map's title for its range)"
        : `one scale for the whole network` + (r ? `: ${CS.fmt(r.network_min)} … ${CS.fmt(r.network_max)}` : "");
  }
  CS.scaleText = scaleText;
  start();
})();
