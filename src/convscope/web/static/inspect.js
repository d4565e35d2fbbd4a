// The inspect panel: a hovered unit's kernel, a clicked unit's computation written out.
"use strict";

(function () {
  const CS = window.CS;
  const ins = (CS.inspect = {});
  const panel = () => document.getElementById("inspect");

  // Weights: blue for negative, orange for positive, stronger for larger |w|.
  function weightColour(w, maxAbs) {
    const t = Math.min(1, Math.abs(w) / (maxAbs || 1));
    const [r, g, b] = w < 0 ? [40, 110, 220] : [235, 120, 30];
    return `rgba(${r},${g},${b},${0.12 + 0.78 * t})`;
  }

  function table(rows, { colour = null, digits = 2, pad = null } = {}) {
    const t = CS.el("table", { class: "nums" });
    const maxAbs = colour === "weights" ? Math.max(...rows.flat().map((v) => Math.abs(v ?? 0))) : 0;
    rows.forEach((row, y) => {
      const tr = CS.el("tr");
      row.forEach((v, x) => {
        const td = CS.el("td", { text: v === null ? "0" : v.toFixed(digits) });
        if (v === null || (pad && pad[y][x])) td.className = "pad";
        if (colour === "weights" && v !== null) td.style.background = weightColour(v, maxAbs);
        tr.append(td);
      });
      t.append(tr);
    });
    return t;
  }

  function layerIndex(l) { return CS.net.model.layers.findIndex((x) => x.name === l.name); }

  // Value of the layer before `l` at channel c, row y, column x (0 in the padding).
  function inputValue(l, c, y, x) {
    const prev = CS.net.model.layers[layerIndex(l) - 1];
    const [, h, w] = prev.shape;
    if (y < 0 || x < 0 || y >= h || x >= w) return null;
    if (prev.kind === "input") {
      const n = CS.net.model.normalization;
      return (CS.net.response.input[y][x] - n.mean[0]) / n.std[0];
    }
    return CS.net.acts[prev.name].value(c, y * w + x);
  }

  function kernelFigure(k, m) {
    const w = k.weight[m];
    const fig = CS.el("div", { class: "kernels" });
    if (w.length === 1) fig.append(table(w[0], { colour: "weights" }));
    else w.forEach((ch, i) => fig.append(CS.el("figure", {}, table(ch, { colour: "weights", digits: 1 }),
      CS.el("figcaption", { text: `from map ${i}` }))));
    return fig;
  }

  // The fed input with the unit's receptive field drawn on it, small enough to sit in the panel.
  function miniInput(win) {
    const size = 112, c = size / 28;
    const canvas = CS.el("canvas", { width: size, height: size, class: "mini-input", "data-testid": "inspect-rf" });
    const ctx = canvas.getContext("2d");
    const src = CS.el("canvas", { width: 28, height: 28 });
    if (CS.net.response) CS.paintFloats(src, CS.net.response.input);
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, size, size);
    ctx.drawImage(src, 0, 0, size, size);
    const x0 = Math.max(0, win.x0), y0 = Math.max(0, win.y0), x1 = Math.min(27, win.x1), y1 = Math.min(27, win.y1);
    ctx.fillStyle = "rgba(232, 89, 12, 0.35)";
    ctx.fillRect(x0 * c, y0 * c, (x1 - x0 + 1) * c, (y1 - y0 + 1) * c);
    ctx.strokeStyle = "#e8590c";
    ctx.lineWidth = 2;
    ctx.strokeRect(x0 * c + 1, y0 * c + 1, (x1 - x0 + 1) * c - 2, (y1 - y0 + 1) * c - 2);
    return canvas;
  }

  ins.hover = function (l, m, y, x) {
    const p = panel();
    const d = CS.net.acts[l.name];
    const win = CS.net.window(l, y, x);
    const v = d ? CS.fmt(d.value(m, y * l.shape[2] + x)) : "–";
    const parts = [CS.el("h3", { text: `${l.name} · map ${m} · unit (${y}, ${x}) = ${v}` }),
      CS.el("p", { class: "hint", text: `sees input rows ${win.y0}…${win.y1}, columns ${win.x0}…${win.x1} ` +
        `(${l.rf[0]}×${l.rf[1]}; outside 0…27 is padding). Click for the computation.` })];
    const k = CS.net.model.kernels[l.name];
    parts.push(CS.el("div", { class: "side" }, miniInput(win), CS.el("span", { class: "hint", text: "its window on the input" })));
    if (k) parts.push(CS.el("p", { text: `kernel ${m} (${k.shape.slice(1).join("×")}), bias ${CS.fmt(k.bias[m])}:` }), kernelFigure(k, m));
    else if (l.kind !== "conv") parts.push(CS.el("p", { text: `${l.kind === "maxpool" ? "the largest" : "the mean"} of a ${l.kernel[0]}×${l.kernel[1]} window of map ${m} of the layer before; no weights.` }));
    p.replaceChildren(...parts);
  };

  ins.fc = function (l, i, v) {
    const label = l.name === CS.net.model.layers.at(-1).name ? ` (class ${CS.net.model.classes[i]})` : "";
    panel().replaceChildren(CS.el("h3", { text: `${l.name} · unit ${i}${label} = ${v === null ? "–" : CS.fmt(v)}` }),
      CS.el("p", { class: "hint", text: "A fully connected unit sees every value of the layer before, so its receptive field is the whole input." }));
  };

  function patch(l, c, y, x) {
    const rows = [];
    for (let ky = 0; ky < l.kernel[0]; ky++) {
      const row = [];
      for (let kx = 0; kx < l.kernel[1]; kx++) {
        row.push(inputValue(l, c, y * l.stride[0] - l.padding[0] + ky * l.dilation[0],
          x * l.stride[1] - l.padding[1] + kx * l.dilation[1]));
      }
      rows.push(row);
    }
    return rows;
  }

  // "0.5 − 0.2 + 1.3": terms joined with their signs (`more`: the first one gets a sign too).
  function signedSum(values, more = false) {
    return values.map((v, i) => (i === 0 && !more ? CS.fmt(v) : `${v < 0 ? "−" : "+"} ${CS.fmt(Math.abs(v))}`)).join(" ");
  }

  function explainConv(l, m, y, x, out) {
    const k = CS.net.model.kernels[l.name];
    const w = k.weight[m];
    const sums = w.map((kc, c) => {
      const pt = patch(l, c, y, x);
      return { pt, prod: pt.map((r, i) => r.map((v, j) => (v ?? 0) * kc[i][j])) };
    });
    sums.forEach((s) => { s.sum = s.prod.flat().reduce((a, b) => a + b, 0); });
    const total = sums.reduce((a, s) => a + s.sum, 0);
    const z = total + k.bias[m];
    const a = l.activation === "relu" ? Math.max(0, z) : z;
    const show = (c) => CS.el("div", { class: "calc" },
      CS.el("figure", {}, table(sums[c].pt), CS.el("figcaption", { text: c === 0 && w.length === 1 ? "input patch (normalised)" : `input patch, map ${c}` })),
      CS.el("span", { class: "op", text: "⊙" }),
      CS.el("figure", {}, table(w[c], { colour: "weights" }), CS.el("figcaption", { text: `kernel ${m}` + (w.length > 1 ? `, slice ${c}` : "") })),
      CS.el("span", { class: "op", text: "=" }),
      CS.el("figure", {}, table(sums[c].prod), CS.el("figcaption", { text: `products, Σ = ${CS.fmt(sums[c].sum)}` })));
    const holder = CS.el("div", {}, show(0));
    if (w.length > 1) {
      const sel = CS.el("select", { "aria-label": "input map" });
      sums.forEach((s, c) => sel.append(CS.el("option", { value: c, text: `input map ${c}: Σ = ${CS.fmt(s.sum)}` })));
      sel.addEventListener("change", () => holder.replaceChildren(show(Number(sel.value))));
      out.append(CS.el("p", { text: `${w.length} input maps, one kernel slice each; showing ` }, sel));
      out.append(CS.el("p", { class: "hint", text: "(the layer before travels as 8-bit values, so this sum is close to, not exactly, the network's)" }));
    }
    out.append(holder);
    const terms = w.length > 1 ? signedSum(sums.map((s) => s.sum)) : CS.fmt(total);
    const act = l.activation === "relu" ? ` → ReLU: max(0, ${CS.fmt(z)}) = ${CS.fmt(a)}` : "";
    out.append(CS.el("p", { class: "formula", text: `dot product ${terms} ${signedSum([k.bias[m]], true)} (bias) = ${CS.fmt(z)}${act}` }));
    return { z, a };
  }

  function explainPool(l, m, y, x, out) {
    const pt = patch(l, m, y, x);
    const vals = pt.flat().filter((v) => v !== null);
    const a = l.kind === "maxpool" ? Math.max(...vals) : vals.reduce((s, v) => s + v, 0) / pt.flat().length;
    out.append(CS.el("div", { class: "calc" }, CS.el("figure", {}, table(pt), CS.el("figcaption", { text: `window of map ${m}` }))));
    out.append(CS.el("p", { class: "formula", text: `${l.kind === "maxpool" ? "max" : "mean"} = ${CS.fmt(a)}` }));
    return { z: a, a };
  }

  ins.explain = function (l, m, y, x) {
    if (!CS.net.response) return;
    const out = CS.el("div", { class: "computation", "data-testid": "computation" });
    out.append(CS.el("h3", { text: `${l.name} · map ${m} · unit (${y}, ${x}): the computation` }));
    out.append(CS.el("div", { class: "side" }, miniInput(CS.net.window(l, y, x)),
      CS.el("span", { class: "hint", text: "its window on the input" })));
    const r = l.kind === "conv" ? explainConv(l, m, y, x, out) : explainPool(l, m, y, x, out);
    const net = CS.net.acts[l.name].value(m, y * l.shape[2] + x);
    out.dataset.z = r.z; out.dataset.activation = r.a; out.dataset.network = net;
    out.append(CS.el("p", { class: "hint", text: `the network's own value: ${CS.fmt(net)} (sent as 8 bits of its map's range)` }));
    const close = CS.el("button", { type: "button", text: "unpin" });
    close.addEventListener("click", () => { CS.net.pinned = null; CS.net.highlight(null); out.remove(); });
    out.append(close);
    panel().replaceChildren(out);
    const box = panel().getBoundingClientRect();  // phones: the panel is not sticky, bring it into view
    if (box.bottom < 0 || box.top > window.innerHeight) panel().scrollIntoView({ block: "start" });
  };
})();
