// The in-browser engine: the same interface as engine.js (health, model, predict, layer,
// weights, samples), answered from the static site's files (model.json, model.onnx,
// weights.json, samples.json) with ONNX Runtime Web. It computes what the server's engine
// answers, step for step, so the page cannot tell the two apart; after the files are loaded
// no request leaves the page. Loaded only by a site (`convscope site`), before engine.js,
// which then keeps this engine (`CS.engine = CS.engine || ...`).
// Its rules on requests (size limits, the texts of refusals and warnings) are rules.js's,
// with the limits and facts the model description sends (model.json: "limits", "digits").
"use strict";

(function (root) {
  const f32 = Math.fround;
  const MAX_PAGE_MAPS = 256;

  const fail = (message) => { throw new Error(message); };

  const { checkDecoded, checkURL, fromList, requestKind, warnings } = root.CS.rules;  // rules.js: the server's texts
  const CS = root.CS;
  if (!root.ort) return;  // onnxruntime-web is missing: engine.js talks to a server instead
  const ort = root.ort;

  async function getJSON(url) {
    const res = await fetch(url);
    if (!res.ok) fail(`${url}: ${res.status} ${res.statusText}`);
    return res.json();
  }

  let site = null;
  function load() {
    site = site || (async () => {
      ort.env.wasm.numThreads = 1;       // no SharedArrayBuffer needed: any static host works
      const here = (f) => new URL(`ort/${f}`, location.href).href;  // see export/site.py: .mjs saved as .js
      ort.env.wasm.wasmPaths = { mjs: here("ort-wasm-simd-threaded.js"), wasm: here("ort-wasm-simd-threaded.wasm") };
      const [m, weights, samples, wrong] = await Promise.all([getJSON("model.json"), getJSON("weights.json"),
        getJSON("samples.json"), getJSON("samples_wrong.json")]);
      for (const key of ["limits", "digits", "version"]) if (m.description[key] === undefined) fail(`model.json has no "${key}": build the site again with this convscope`);
      const cam = m.description.site.gradcam || {};
      // both graphs are fetched while the page loads: nothing is requested after that
      const [session, camSession] = await Promise.all([
        ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] }),
        cam.onnx ? ort.InferenceSession.create(cam.onnx, { executionProviders: ["wasm"] }) : null]);
      return { desc: m.description, config: m.config, weights, samples, wrong, session, camSession, kept: new Map(), nextId: 1 };
    })();
    return site;
  }

  // ---- images in ------------------------------------------------------------------------
  // -> {rgba, h, w}: the decoded bytes, for CS.preprocess.prepareRGBA
  async function decode(url, limits, { file = false } = {}) {
    checkURL(file ? "file" : "png", url);
    const img = new Image();
    img.src = url;
    try { await img.decode(); } catch (_) { fail("the image could not be decoded; send a complete PNG, JPEG, WebP, BMP or GIF file"); }
    const w = img.naturalWidth, h = img.naturalHeight;
    checkDecoded(w, h, limits, { file });
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    return { rgba: ctx.getImageData(0, 0, w, h).data, h, w };
  }

  // ---- what the server sends for a layer (encoding.encode_maps + Explorer.encode) --------------
  function base64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }
  const rint = (v) => { const r = Math.round(v); return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r; };

  function encodeMaps(name, v, maps) {
    const is3 = v.shape.length === 3;
    const rows = is3 ? v.shape[0] : 1, per = v.data.length / rows;
    const picked = maps || Array.from({ length: rows }, (_, i) => i);
    const q = new Uint8Array(picked.length * per), lo = [], hi = [];
    let amin = Infinity, amax = -Infinity;
    for (const x of v.data) { if (x < amin) amin = x; if (x > amax) amax = x; }
    picked.forEach((m, j) => {
      let a = Infinity, b = -Infinity;
      for (let i = m * per; i < (m + 1) * per; i++) { const x = v.data[i]; if (x < a) a = x; if (x > b) b = x; }
      const span = b > a ? f32(b - a) : 1;
      for (let i = 0; i < per; i++) q[j * per + i] = rint(f32(f32(f32(v.data[m * per + i] - a) / span) * 255));
      lo.push(a); hi.push(b);
    });
    return {
      name, shape: maps == null || !is3 ? v.shape.slice() : [picked.length, ...v.shape.slice(1)],
      full_shape: v.shape.slice(), total_maps: rows, maps: is3 ? picked : [0],
      min: amin, max: amax, map_min: lo, map_max: hi, bytes: q.length, data: base64(q),
    };
  }

  function encode(layer, v, { offset = 0, limit = null, sort = "index" } = {}) {
    let maps = null;
    if (v.shape.length === 3 && (limit != null || offset || sort !== "index")) {
      const total = v.shape[0], per = v.data.length / total;
      let order = Array.from({ length: total }, (_, i) => i);
      if (sort === "strength") {
        const mean = order.map((m) => { let s = 0; for (let i = m * per; i < (m + 1) * per; i++) s += v.data[i]; return s / per; });
        order = order.sort((a, b) => mean[b] - mean[a]);  // stable: equal means keep index order
      }
      maps = order.slice(offset, offset + (limit != null ? limit : total));
    }
    const enc = encodeMaps(layer.name, v, maps);
    enc.layer_min = enc.min; enc.layer_max = enc.max; enc.sort = sort;
    return enc;
  }

  const round4 = (v) => Math.round(v * 1e4) / 1e4;
  function grid(data, h, w) {
    const out = [];
    for (let y = 0; y < h; y++) out.push(Array.from(data.subarray(y * w, (y + 1) * w), round4));
    return out;
  }

  // ---- Explorer.compute -------------------------------------------------------------------
  // the network's input for a decoded image (rgba) or a 2-D list (gray), as the server prepares it
  function prep(img, cfg, { file = false, preprocess = true } = {}) {
    if (img.gray) return CS.preprocess.prepare(img.gray, img.h, img.w, cfg, preprocess);
    return CS.preprocess.prepareRGBA(img.rgba, img.w, img.h, cfg, { file, preprocess });
  }

  async function compute(s, x, shown, raw) {
    const [C, H, W] = s.desc.input_size;
    const t0 = performance.now();
    const res = await s.session.run({ input: new ort.Tensor("float32", x, [1, C, H, W]) });
    s.runMs = performance.now() - t0;
    const logits = Array.from(res.logits.data);
    const top = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - top)), sum = e.reduce((a, b) => a + b, 0);
    const probs = e.map((v) => v / sum);
    const order = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a]);
    const values = { input: { data: Float32Array.from(shown), shape: [C, H, W] } };
    for (const layer of s.desc.layers) {
      if (layer.kind === "input") continue;
      const t = res[layer.name];
      values[layer.name] = { data: t.data, shape: t.dims.slice(1).length === 3 ? t.dims.slice(1) : [t.data.length] };
    }
    const inputId = s.nextId++;
    s.kept.set(inputId, { values, x, logits });
    while (s.kept.size > s.desc.site.keep_inputs) s.kept.delete(s.kept.keys().next().value);
    const layers = [];
    let budget = s.desc.site.first_screen_bytes, lo = Infinity, hi = -Infinity;
    for (const layer of s.desc.layers) {
      const v = values[layer.name];
      if (layer.kind !== "input") for (const a of v.data) { if (a < lo) lo = a; if (a > hi) hi = a; }
      if (budget <= 0 && layer.kind !== "input") continue;
      const partial = v.shape.length === 3 && v.data.length > budget && v.shape[0] > s.desc.site.first_maps;
      const enc = encode(layer, v, { limit: partial ? s.desc.site.first_maps : null, sort: partial ? "strength" : "index" });
      budget -= enc.bytes;
      layers.push(enc);
    }
    const input = C * H * W <= 3 * 64 * 64
      ? (C === 1 ? grid(values.input.data, H, W) : Array.from({ length: C }, (_, c) => grid(values.input.data.subarray(c * H * W, (c + 1) * H * W), H, W)))
      : null;
    return {
      probabilities: probs,
      top: order.slice(0, 5).map((i) => ({ index: i, label: s.desc.classes[i], probability: probs[i] })),
      input_id: inputId, input, raw: raw ? grid(Float32Array.from(raw), H, W) : null,
      network_min: lo <= hi ? lo : 0, network_max: lo <= hi ? hi : 0,
      layers, version: s.desc.version,
      warnings: warnings({ randomWeights: s.desc.random_weights, preprocessing: s.config.preprocessing, inputSize: s.desc.input_size },
        values.input.data, probs, order, raw),
    };
  }

  async function predict(request) {
    const s = await load();
    const t0 = performance.now();
    const out = await answer(s, request);
    // per drawing: decoding, preprocessing, the forward pass, encoding every layer
    const kind = request.sample !== undefined ? "sample" : request.png ? "drawing" : request.file ? "file" : "image";
    CS.engine.timings.push({ kind, total_ms: performance.now() - t0, forward_ms: s.runMs });
    return out;
  }

  async function answer(s, request) {
    const cfg = { ...s.config, input_size: s.desc.input_size, normalization: s.desc.normalization };
    const digits = s.desc.digits;  // the server's fact: inputs prepared as MNIST digits (a raw downsample beside them)
    const { kind, preprocess } = requestKind(request || {});
    if (kind === "sample") {
      const item = [...(s.samples.samples || []), ...(s.wrong.samples || [])].find((it) => it.index === request.sample);
      if (!item) fail(`sample ${request.sample} is not in this site (it keeps ${(s.samples.samples || []).length} test images and ${(s.wrong.samples || []).length} misclassified ones)`);
      // the image itself where the thumbnail is smaller (export/site.py)
      const img = await decode(item.image || item.png, s.desc.limits, { file: true });
      const { x, shown } = prep(img, cfg, { file: true, preprocess: false });
      const out = await compute(s, x, shown, null);
      out.sample = { index: item.index, truth: item.truth, label: item.label };
      return out;
    }
    const file = kind === "file";
    const img = kind === "image" ? fromList(request.image, s.desc.limits) : await decode(request[kind], s.desc.limits, { file });
    const { x, shown } = prep(img, cfg, { file, preprocess });
    // the plain downsample beside the fed image (the fed image itself when not preprocessing)
    const raw = digits ? (preprocess ? prep(img, cfg, { file, preprocess: false }).shown : shown) : null;
    return compute(s, x, shown, raw);
  }

  // [id, what was kept of it] for ?input=ID, or the last input answered
  function keptInput(s, input) {
    if (!s.kept.size) fail("nothing predicted yet: draw something first");
    const id = input != null ? Number(input) : [...s.kept.keys()].pop();
    const kept = s.kept.get(id) || fail(`input ${id} is no longer kept (this page keeps the last ${s.desc.site.keep_inputs}); predict it again`);
    return [id, kept];
  }

  async function layer(name, opts = {}) {
    const s = await load();
    const info = s.desc.layers.find((l) => l.name === name) || fail(`no layer "${name}" in this network`);
    const sort = opts.sort || "index";
    const offset = Number(opts.offset || 0), limit = Number(opts.limit || 64);
    if (sort !== "index" && sort !== "strength") fail('sort must be "index" or "strength"');
    if (!(offset >= 0) || !(limit >= 1 && limit <= MAX_PAGE_MAPS)) fail(`offset must be >= 0 and limit 1..${MAX_PAGE_MAPS}`);
    const [id, kept] = keptInput(s, opts.input);
    const enc = encode(info, kept.values[name], { offset, limit, sort });
    enc.input_id = id;
    enc.version = s.desc.version;
    return enc;
  }

  async function weights(name, unit) {
    const s = await load();
    const units = s.weights[name] || fail(`this site has no weights for layer "${name}" (only conv, fc and batch-norm layers of networks up to 2M parameters)`);
    return units[Number(unit)] || fail(`unit must be 0..${units.length - 1} for layer "${name}"`);
  }

  async function samples(opts = {}) {
    const s = await load();
    // misclassified: found when the site was built, over the first `evaluated` test images (export/site.py)
    const page = opts.wrong && Number(opts.wrong) !== 0 ? s.wrong : s.samples;
    if (page.note && !(page.samples || []).length) fail(page.note);
    const offset = Number(opts.offset || 0), limit = Number(opts.limit || 24);
    if (!(offset >= 0) || !(limit >= 1 && limit <= 96)) fail("offset must be >= 0 and limit 1..96");
    return { ...page, offset, samples: (page.samples || []).slice(offset, offset + limit) };
  }

  // ---- why this class: Grad-CAM from the site's gradient graph (export/gradcam.py) ---------------
  // why Grad-CAM cannot be computed in this site, or null when it can
  async function gradcamUnavailable() {
    const cam = (await load()).desc.site.gradcam || {};
    return cam.onnx ? null : (cam.unavailable || "this static site has no Grad-CAM graph; `convscope serve` computes Grad-CAM");
  }

  async function gradcam(opts = {}) {
    const s = await load();
    const why = await gradcamUnavailable();
    if (why) fail(why);
    const rank = Number(opts.rank === undefined ? 0 : opts.rank);
    if (rank !== 0 && rank !== 1) fail("rank must be 0 (the first guess) or 1 (the second)");
    const [id, kept] = keptInput(s, opts.input);
    const [C, H, W] = s.desc.input_size;
    const target = kept.logits.map((_, i) => i).sort((a, b) => kept.logits[b] - kept.logits[a])[rank];
    const onehot = new Float32Array(kept.logits.length);
    onehot[target] = 1;
    const res = await s.camSession.run({ input: new ort.Tensor("float32", kept.x, [1, C, H, W]), onehot: new ort.Tensor("float32", onehot, [1, onehot.length]) });
    const heat = res.cam.data;
    let peak = -Infinity;
    for (const v of heat) if (v > peak) peak = v;
    // as Explorer.gradcam: heat / peak (float32), clipped to [0, 1], times 255, rounded half to even
    const q = new Uint8Array(heat.length);
    for (let i = 0; i < heat.length; i++) {
      const v = peak > 0 ? f32(heat[i] / peak) : heat[i];
      q[i] = rint(f32((v < 0 ? 0 : v > 1 ? 1 : v) * 255));
    }
    return { input_id: id, version: s.desc.version, rank, target, label: s.desc.classes[target], layer: s.desc.site.gradcam.layer,
      shape: [res.cam.dims[0], res.cam.dims[1]], data: base64(q) };
  }

  async function health() {
    const s = await load();
    return { status: "ok", model: s.desc.model, run: s.desc.run, dataset: s.desc.dataset, classes: s.desc.classes,
      random_weights: s.desc.random_weights, origin: s.desc.origin, engine: `onnxruntime-web ${s.desc.site.ort_web}` };
  }

  CS.engine = {
    kind: "browser", timings: [],
    health, model: async () => (await load()).desc, predict, layer, weights, samples, gradcam, gradcamUnavailable,
  };
})(typeof window !== "undefined" ? window : globalThis);
