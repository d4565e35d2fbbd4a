// The network view: every layer drawn as it is (fetched when shown), the graph outline,
// hover for receptive fields and kernels, colour scales per map / layer / network.
"use strict";

(function () {
  const CS = window.CS;
  const net = (CS.net = { model: null, views: {}, acts: {}, response: null, pinned: null, mode: "map", byName: {} });
  const MAX_MAPS = 16;       // maps drawn at first for a layer with many; "more" fetches the next ones
  const fmtInt = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n));

  const isVector = (l) => l.shape.length === 1 || (l.shape.length === 3 && l.shape[1] * l.shape[2] === 1);
  net.inputHW = () => net.model.input_size.slice(1);
  net.isOutput = (l) => l.name === net.model.layers[net.model.layers.length - 1].name;

  function geometryText(l) {
    if (l.kind === "input") return `${l.shape.join("×")} · what the network is fed (normalisation undone)`;
    const act = l.activation ? ` · then ${l.activation === "relu" ? "ReLU" : l.activation}` : "";
    const padText = l.padding_mode === "same_tf" ? "same (TF)" : Array.isArray(l.padding) ? (l.padding.length === 4 ? l.padding.join("/") : l.padding[0]) : l.padding;
    const poolText = (l.ceil_mode ? ", ceil mode" : "") + (l.kind === "avgpool" && l.count_include_pad === false && padText ? ", padding not counted" : "");
    const cost = ` · ${fmtInt(l.params || 0)} params · ${l.macs === null || l.macs === undefined ? "?" : fmtInt(l.macs)} MACs`;
    const rf = l.whole_input ? "sees the whole input" : `receptive field ${l.rf[0]}×${l.rf[1]}`;
    let what = l.kind;
    if (l.kind === "fc") what = `fully connected, ${l.shape[0]} units`;
    else if (l.adaptive || l.global) what = `adaptive ${l.kind === "maxpool" ? "max" : "average"} pool to ${l.shape.slice(1).join("×")}`;
    else if (l.kernel) {
      const k = `${l.kernel[0]}×${l.kernel[1]}`;
      const dil = l.dilation && l.dilation[0] > 1 ? `, dilation ${l.dilation[0]}` : "";
      what = l.kind === "conv" ? `conv ${k}, stride ${l.stride[0]}, padding ${padText}${dil}${l.depthwise ? ", depthwise" : l.groups > 1 ? `, ${l.groups} groups` : ""}`
        : `${l.kind === "maxpool" ? "max" : "average"} pool ${k}, stride ${l.stride[0]}, padding ${padText}${poolText}`;
    } else if (l.kind === "add") what = `addition of ${l.inputs.join(" + ")}`;
    else if (l.kind === "concat") what = `concatenation of ${l.inputs.length} inputs along the channels`;
    else if (l.kind === "bn") what = "batch norm";
    const folded = l.folded.length ? ` · also runs: ${l.folded.join(", ")}` : "";
    return `${what}${act} · ${l.shape.join("×")} · ${rf}${cost}${folded}`;
  }
  net.geometryText = geometryText;

  // ---- building the layer cards -------------------------------------------------------
  function buildInput(l, body) {
    const [c, h, w] = l.shape;
    const wrap = CS.el("div", { class: "input-wrap" });
    wrap.style.aspectRatio = `${w} / ${h}`;
    const canvas = CS.el("canvas", { width: w, height: h, class: "input-map" });
    const hl = CS.el("div", { class: "rf-highlight", "data-testid": "rf-highlight", hidden: "" });
    const cam = CS.el("img", { class: "gradcam-overlay", "data-testid": "gradcam-overlay", alt: "Grad-CAM heat map", hidden: "" });
    wrap.append(canvas, cam, hl);
    body.append(wrap);
    const channels = [];
    if (c === 3) {
      for (const [i, name] of ["red", "green", "blue"].entries()) {
        const cv = CS.el("canvas", { width: w, height: h, class: "map channel", "data-testid": `input-channel-${i}` });
        body.append(CS.el("figure", { class: "map-fig" }, cv, CS.el("figcaption", { text: name })));
        channels.push(cv);
      }
    }
    return { canvases: [canvas], channels, highlight: hl, wrap, cam };
  }

  function buildMaps(view) {
    const l = view.layer;
    const d = net.acts[l.name];
    const [, h, w] = l.shape;
    const scale = Math.max(1, Math.min(8, Math.ceil(56 / h)));
    view.body.replaceChildren();
    view.canvases = [];
    d.layer.maps.forEach((m, pos) => {
      const canvas = CS.el("canvas", { width: w, height: h, class: "map", tabindex: "0",
        "aria-label": `${l.name} map ${m}: arrow keys move, Enter explains` });
      canvas.style.width = `${w * scale}px`;
      canvas.style.height = `${h * scale}px`;
      canvas.dataset.map = m;
      view.body.append(CS.el("figure", { class: "map-fig" }, canvas, CS.el("figcaption", { text: String(m) })));
      view.canvases.push(canvas);
      attachHover(canvas, l, m, pos);
    });
    const total = d.layer.total_maps;
    if (d.layer.maps.length < total) {
      const more = CS.el("button", { type: "button", class: "more", "data-testid": `more-${l.name}`,
        text: `${d.layer.maps.length} of ${total} maps (strongest first) · show ${Math.min(MAX_MAPS, total - d.layer.maps.length)} more` });
      more.addEventListener("click", () => net.load(l.name, { limit: d.layer.maps.length + MAX_MAPS }));
      view.body.append(more);
    }
  }

  function buildCells(view) {
    const l = view.layer;
    const n = l.shape[0];
    const out = net.isOutput(l);
    const cols = out ? null : n <= 12 ? n : Math.min(40, Math.ceil(Math.sqrt(n * 1.2)));
    const grid = CS.el("div", { class: "cells" + (out ? " output" : "") });
    if (cols) grid.style.gridTemplateColumns = `repeat(${cols}, 14px)`;
    view.cells = [];
    for (let i = 0; i < n; i++) {
      const label = out ? (net.model.classes[i] ?? String(i)) : "";
      const cell = CS.el("div", { class: "cell", title: out ? label : `unit ${i}`, tabindex: "0",
        "aria-label": out ? `output ${label}` : `${l.name} unit ${i}` });
      if (out) cell.textContent = label;
      cell.addEventListener("pointerenter", () => { if (!net.pinned) CS.inspect.fc(l, i); });
      cell.addEventListener("focus", () => { if (!net.pinned) CS.inspect.fc(l, i); });
      const click = () => {
        if (!net.response) { CS.inspect.nothingYet(); return; }
        net.pinned = [l, "fc", i];
        CS.inspect.explainFc(l, i);
      };
      cell.addEventListener("click", click);
      cell.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); click(); } });
      grid.append(cell);
      view.cells.push(cell);
    }
    view.body.replaceChildren(grid);
  }

  net.build = function (model, container, toggles, graph) {
    net.model = model;
    net.byName = Object.fromEntries(model.layers.map((l) => [l.name, l]));
    container.replaceChildren();
    toggles.replaceChildren();
    const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
      for (const e of entries) if (e.isIntersecting) net.ensure(e.target.dataset.name);
    }, { rootMargin: "300px" }) : null;
    for (const l of model.layers) {
      const body = CS.el("div", { class: "layer-body" }, CS.el("p", { class: "hint", text: "shown once an image is fed" }));
      const head = CS.el("header", {}, CS.el("b", { text: l.name }), CS.el("span", { text: geometryText(l) }));
      const sec = CS.el("section", { class: `layer kind-${l.kind}`, id: `layer-${l.name}`, "data-testid": `layer-${l.name}` }, head, body);
      sec.dataset.name = l.name;
      container.append(sec);
      const view = { section: sec, layer: l, body, canvases: [] };
      if (l.kind === "input") Object.assign(view, buildInput(l, body.replaceChildren() || body));
      net.views[l.name] = view;
      const box = CS.el("input", { type: "checkbox", "data-testid": `layer-toggle-${l.name}`, checked: "" });
      box.addEventListener("change", () => { sec.hidden = !box.checked; });
      toggles.append(CS.el("label", { class: "toggle" }, box, ` ${l.name}`));
      if (observer && l.kind !== "input") observer.observe(sec);
    }
    CS.graph.build(model, graph);
  };

  // ---- data ----------------------------------------------------------------------------
  function render(name) {
    const view = net.views[name];
    const d = net.acts[name];
    if (!view || !d) return;
    const l = view.layer;
    if (l.kind === "input") return paintInput(view, d);
    if (isVector(l)) {
      if (!view.cells) buildCells(view);
      const [lo, hi] = range(l, d, 0);
      view.cells.forEach((cell, i) => {
        const q = colourIndex(d.value(0, i), lo, hi);
        cell.style.background = `rgb(${CS.LUT[q * 3]},${CS.LUT[q * 3 + 1]},${CS.LUT[q * 3 + 2]})`;
        cell.style.color = q > 150 ? "#111" : "#eee";
        if (!net.isOutput(l)) cell.title = `unit ${i}: ${CS.fmt(d.value(0, i))}`;
      });
      return;
    }
    if (!view.canvases.length || view.canvases.length !== d.layer.maps.length || view.mapsKey !== d.layer.maps.join()) {
      buildMaps(view);
      view.mapsKey = d.layer.maps.join();
    }
    const [, h, w] = l.shape;
    view.canvases.forEach((c, pos) => {
      const m = d.layer.maps[pos];
      const [lo, hi] = range(l, d, pos);
      paintScaled(c, d, pos, w, h, lo, hi);
      c.title = `map ${m}: ${CS.fmt(d.layer.map_min[pos])} … ${CS.fmt(d.layer.map_max[pos])}`;
    });
  }

  // The colour scale of a map: its own range, its layer's, or the whole network's.
  function range(l, d, pos) {
    if (net.mode === "network" && net.response) return [net.response.network_min, net.response.network_max];
    if (net.mode === "layer") return [d.layer.layer_min ?? d.layer.min, d.layer.layer_max ?? d.layer.max];
    return [d.layer.map_min[pos], d.layer.map_max[pos]];
  }
  function colourIndex(v, lo, hi) { return hi > lo ? Math.max(0, Math.min(255, Math.round(((v - lo) / (hi - lo)) * 255))) : 0; }

  function paintScaled(canvas, d, pos, w, h, lo, hi) {
    const mn = d.layer.map_min[pos], mx = d.layer.map_max[pos];
    const q = new Uint8Array(w * h);
    const off = pos * w * h;
    for (let i = 0; i < w * h; i++) q[i] = colourIndex(mn + (d.q[off + i] / 255) * (mx - mn), lo, hi);
    CS.paint(canvas, q, w, h);
  }

  function paintInput(view, d) {
    const [c, h, w] = view.layer.shape;
    const canvas = view.canvases[0];
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      for (let k = 0; k < 3; k++) img.data[i * 4 + k] = Math.round(d.value(c === 3 ? k : 0, i) * 255);
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    view.channels.forEach((cv, k) => {
      cv.width = w; cv.height = h;
      const cctx = cv.getContext("2d");
      const ci = cctx.createImageData(w, h);
      for (let i = 0; i < w * h; i++) { ci.data[i * 4 + k] = Math.round(d.value(k, i) * 255); ci.data[i * 4 + 3] = 255; }
      cctx.putImageData(ci, 0, 0);
    });
  }

  net.update = function (response) {
    net.response = response;
    net.acts = {};
    for (const name of Object.keys(net.views)) net.views[name].stale = true;
    for (const layer of response.layers) {
      net.acts[layer.name] = CS.decodeLayer(layer);
      net.views[layer.name].stale = false;
      render(layer.name);
    }
    // what is on screen and not in the answer is fetched now; the rest when scrolled to
    for (const [name, view] of Object.entries(net.views)) {
      if (view.stale && !view.section.hidden && onScreen(view.section)) net.ensure(name);
    }
    if (net.pinned && net.pinned[1] !== "fc") CS.inspect.explain(...net.pinned);
  };

  function onScreen(el) { const r = el.getBoundingClientRect(); return r.bottom > -300 && r.top < window.innerHeight + 300; }

  const pending = {};
  net.ensure = function (name) { if (net.response && !net.acts[name] && !pending[name]) return net.load(name); return Promise.resolve(net.acts[name]); };
  net.load = async function (name, { limit = null, all = false } = {}) {
    const l = net.byName[name];
    if (!net.response) return null;
    const total = l.shape.length === 3 ? l.shape[0] : 1;
    const n = all ? Math.min(total, 256) : Math.min(total, limit || MAX_MAPS);
    const sort = all || n >= total ? "index" : "strength";
    const id = net.response.input_id;
    pending[name] = true;
    try {
      const layer = await CS.engine.layer(name, { input: id, offset: 0, limit: Math.max(1, n), sort });
      if (CS.changedModel && await CS.changedModel(layer)) return null;  // another model's values: never drawn on this one
      if (!net.response || net.response.input_id !== id) return null;
      net.acts[name] = CS.decodeLayer(layer);
      net.views[name].stale = false;
      render(name);
      return net.acts[name];
    } finally { delete pending[name]; }
  };

  net.setMode = function (mode) {
    net.mode = mode;
    for (const name of Object.keys(net.acts)) render(name);
  };

  // ---- receptive fields ------------------------------------------------------------------
  // The input pixels unit (y, x) of layer l sees: centre start + i*jump, +- (rf-1)/2.
  net.window = function (l, y, x) {
    const y0 = l.start[0] + y * l.jump[0] - (l.rf[0] - 1) / 2;
    const x0 = l.start[1] + x * l.jump[1] - (l.rf[1] - 1) / 2;
    return { y0, x0, y1: y0 + l.rf[0] - 1, x1: x0 + l.rf[1] - 1 };
  };

  function highlight(win) {
    const hl = net.views.input && net.views.input.highlight;
    if (!hl) return;
    if (!win) { hl.hidden = true; return; }
    const [H, W] = net.inputHW();
    const cy = (v) => Math.min(H - 1, Math.max(0, v)), cx = (v) => Math.min(W - 1, Math.max(0, v));
    const y0 = cy(win.y0), x0 = cx(win.x0), y1 = cy(win.y1), x1 = cx(win.x1);
    Object.assign(hl.dataset, { y0, x0, y1, x1 });
    Object.assign(hl.style, {
      top: `${(y0 / H) * 100}%`, left: `${(x0 / W) * 100}%`,
      height: `${((y1 - y0 + 1) / H) * 100}%`, width: `${((x1 - x0 + 1) / W) * 100}%`,
    });
    hl.hidden = false;
  }
  net.highlight = highlight;

  function unitAt(canvas, ev) {
    const r = canvas.getBoundingClientRect();
    const x = Math.floor(((ev.clientX - r.left) / r.width) * canvas.width);
    const y = Math.floor(((ev.clientY - r.top) / r.height) * canvas.height);
    return [Math.min(canvas.height - 1, Math.max(0, y)), Math.min(canvas.width - 1, Math.max(0, x))];
  }

  function attachHover(canvas, l, m) {
    const at = { y: 0, x: 0 };
    const hover = (y, x) => {
      at.y = y; at.x = x;
      if (net.pinned) return;  // the panel and the box stay on the pinned unit until "unpin"
      highlight(net.window(l, y, x));
      CS.inspect.hover(l, m, y, x);
    };
    const pin = (y, x) => {
      if (!net.response) { CS.inspect.nothingYet(); return; }  // nothing computed yet: nothing to pin
      net.pinned = [l, m, y, x];
      highlight(net.window(l, y, x));
      CS.inspect.explain(l, m, y, x);
    };
    canvas.addEventListener("pointermove", (ev) => hover(...unitAt(canvas, ev)));
    canvas.addEventListener("pointerleave", () => { if (!net.pinned) highlight(null); });
    canvas.addEventListener("blur", () => { if (!net.pinned) highlight(null); });
    canvas.addEventListener("click", (ev) => pin(...unitAt(canvas, ev)));
    canvas.addEventListener("focus", () => hover(at.y, at.x));
    canvas.addEventListener("keydown", (ev) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (moves[ev.key]) {
        ev.preventDefault();
        hover(Math.min(canvas.height - 1, Math.max(0, at.y + moves[ev.key][0])),
          Math.min(canvas.width - 1, Math.max(0, at.x + moves[ev.key][1])));
      } else if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pin(at.y, at.x); }
    });
  }
})();
