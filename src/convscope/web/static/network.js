// The network view: every layer drawn as it is, hover for receptive fields and kernels.
"use strict";

(function () {
  const CS = window.CS;
  const net = (CS.net = { model: null, views: {}, acts: {}, response: null, pinned: null });

  function geometryText(l) {
    if (l.kind === "input") return `${l.shape.join("×")} · what the network is fed`;
    const rf = `receptive field ${l.rf[0]}×${l.rf[1]}`;
    const act = l.activation ? ` · ${l.activation === "relu" ? "ReLU" : l.activation}` : "";
    if (l.kind === "fc") return `fully connected · ${l.shape[0]} units${act}`;
    const k = `${l.kernel[0]}×${l.kernel[1]}`;
    const what = l.kind === "conv" ? `conv ${k}, stride ${l.stride[0]}, padding ${l.padding[0]}`
      : `${l.kind === "maxpool" ? "max" : "average"} pool ${k}, stride ${l.stride[0]}`;
    return `${what}${act} · ${l.shape.join("×")} · ${rf}`;
  }

  function buildInput(l, body) {
    const wrap = CS.el("div", { class: "input-wrap" });
    const canvas = CS.el("canvas", { width: 28, height: 28, class: "input-map" });
    const hl = CS.el("div", { class: "rf-highlight", "data-testid": "rf-highlight", hidden: "" });
    wrap.append(canvas, hl);
    body.append(wrap);
    return { canvases: [canvas], highlight: hl, wrap };
  }

  function buildMaps(l, body) {
    const [c, h] = l.shape;
    const scale = Math.max(4, Math.ceil(50 / h));
    const canvases = [];
    for (let m = 0; m < c; m++) {
      const canvas = CS.el("canvas", { width: l.shape[2], height: h, class: "map" });
      canvas.style.width = `${l.shape[2] * scale}px`;
      canvas.style.height = `${h * scale}px`;
      canvas.dataset.map = m;
      const fig = CS.el("figure", { class: "map-fig" }, canvas, CS.el("figcaption", { text: String(m) }));
      body.append(fig);
      canvases.push(canvas);
      attachHover(canvas, l, m);
    }
    return { canvases };
  }

  function buildCells(l, body) {
    const n = l.shape[0];
    const isOutput = l.name === net.model.layers[net.model.layers.length - 1].name;
    const cols = n <= 12 ? n : Math.ceil(Math.sqrt(n * 1.2));
    const grid = CS.el("div", { class: "cells" + (isOutput ? " output" : "") });
    grid.style.gridTemplateColumns = `repeat(${cols}, ${isOutput ? "minmax(0, 3.2em)" : "14px"})`;
    const cells = [];
    for (let i = 0; i < n; i++) {
      const cell = CS.el("div", { class: "cell", title: `unit ${i}` });
      if (isOutput) cell.textContent = net.model.classes[i] ?? String(i);
      cell.addEventListener("pointerenter", () => showFc(l, i));
      grid.append(cell);
      cells.push(cell);
    }
    body.append(grid);
    return { cells };
  }

  net.build = function (model, container, toggles) {
    net.model = model;
    container.replaceChildren();
    toggles.replaceChildren();
    for (const l of model.layers) {
      const body = CS.el("div", { class: "layer-body" });
      const head = CS.el("header", {}, CS.el("b", { text: l.name }), CS.el("span", { text: geometryText(l) }));
      const sec = CS.el("section", { class: `layer kind-${l.kind}`, id: `layer-${l.name}`, "data-testid": `layer-${l.name}` }, head, body);
      container.append(sec);
      const view = l.kind === "input" ? buildInput(l, body) : l.kind === "fc" ? buildCells(l, body) : buildMaps(l, body);
      net.views[l.name] = { ...view, section: sec, layer: l };
      const box = CS.el("input", { type: "checkbox", "data-testid": `layer-toggle-${l.name}`, checked: "" });
      box.addEventListener("change", () => { sec.hidden = !box.checked; });
      toggles.append(CS.el("label", { class: "toggle" }, box, ` ${l.name}`));
    }
  };

  net.update = function (response) {
    net.response = response;
    for (const layer of response.layers) {
      const view = net.views[layer.name];
      if (!view) continue;
      const d = CS.decodeLayer(layer);
      net.acts[layer.name] = d;
      if (view.cells) {
        view.cells.forEach((cell, i) => {
          const q = d.q[i];
          cell.style.background = `rgb(${CS.LUT[q * 3]},${CS.LUT[q * 3 + 1]},${CS.LUT[q * 3 + 2]})`;
          cell.style.color = q > 150 ? "#111" : "#eee";
          cell.title = `unit ${i}: ${CS.fmt(d.value(0, i))}`;
        });
      } else if (layer.name === "input") {
        CS.paint(view.canvases[0], d.q, 28, 28, 0, true);
      } else {
        const [, h, w] = layer.shape;
        view.canvases.forEach((c, m) => {
          CS.paint(c, d.q, w, h, m * h * w);
          c.title = `map ${m}: ${CS.fmt(layer.map_min[m])} … ${CS.fmt(layer.map_max[m])}`;
        });
      }
    }
    if (net.pinned) explain(...net.pinned);
  };

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
    const c = (v) => Math.min(27, Math.max(0, v));
    const y0 = c(win.y0), x0 = c(win.x0), y1 = c(win.y1), x1 = c(win.x1);
    Object.assign(hl.dataset, { y0, x0, y1, x1 });
    Object.assign(hl.style, {
      top: `${(y0 / 28) * 100}%`, left: `${(x0 / 28) * 100}%`,
      height: `${((y1 - y0 + 1) / 28) * 100}%`, width: `${((x1 - x0 + 1) / 28) * 100}%`,
    });
    hl.hidden = false;
  }

  function unitAt(canvas, ev) {
    const r = canvas.getBoundingClientRect();
    const x = Math.floor(((ev.clientX - r.left) / r.width) * canvas.width);
    const y = Math.floor(((ev.clientY - r.top) / r.height) * canvas.height);
    return [Math.min(canvas.height - 1, Math.max(0, y)), Math.min(canvas.width - 1, Math.max(0, x))];
  }

  function attachHover(canvas, l, m) {
    canvas.addEventListener("pointermove", (ev) => {
      const [y, x] = unitAt(canvas, ev);
      highlight(net.window(l, y, x));
      if (!net.pinned) CS.inspect.hover(l, m, y, x);
    });
    canvas.addEventListener("pointerleave", () => { if (!net.pinned) highlight(null); });
    canvas.addEventListener("click", (ev) => {
      const [y, x] = unitAt(canvas, ev);
      net.pinned = [l, m, y, x];
      highlight(net.window(l, y, x));
      explain(l, m, y, x);
    });
  }

  function explain(l, m, y, x) { CS.inspect.explain(l, m, y, x); }

  function showFc(l, i) {
    const d = net.acts[l.name];
    highlight({ y0: 0, x0: 0, y1: 27, x1: 27 });
    if (!net.pinned) CS.inspect.fc(l, i, d ? d.value(0, i) : null);
  }
  net.highlight = highlight;
})();
