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

  // Value of the layer `l` reads, at channel c, row y, column x (null in the padding).
  function inputValue(l, c, y, x) {
    const prev = CS.net.byName[l.inputs[0]];
    const [, h, w] = prev.shape;
    if (y < 0 || x < 0 || y >= h || x >= w) return null;
    const v = CS.net.acts[prev.name].value(c, y * w + x);
    if (prev.kind === "input") {
      const n = CS.net.model.normalization;
      return (v - n.mean[c % n.mean.length]) / n.std[c % n.std.length];
    }
    return v;
  }

  // The kernel of one output channel: sent with the model for small layers, fetched otherwise.
  const fetched = {};
  async function kernelOf(l, m) {
    const k = CS.net.model.kernels[l.name];
    if (k) return { shape: k.shape.slice(1), weight: k.weight[m], bias: k.bias[m] };
    const key = `${l.name}/${m}`;
    if (!fetched[key]) fetched[key] = CS.engine.weights(l.name, m);
    const w = await fetched[key];
    return { shape: w.shape, weight: w.weight, bias: w.bias };
  }
  ins.kernelOf = kernelOf;

  function kernelFigure(k, m) {
    const w = k.weight;
    const fig = CS.el("div", { class: "kernels" });
    if (w.length === 1) fig.append(table(w[0], { colour: "weights" }));
    else w.forEach((ch, i) => fig.append(CS.el("figure", {}, table(ch, { colour: "weights", digits: 1 }),
      CS.el("figcaption", { text: `from map ${i}` }))));
    return fig;
  }

  // The fed input with the unit's receptive field drawn on it, small enough to sit in the panel.
  function miniInput(win) {
    const size = 112;
    const [H, W] = CS.net.inputHW();
    const c = size / Math.max(H, W);
    const canvas = CS.el("canvas", { width: size, height: size, class: "mini-input", "data-testid": "inspect-rf" });
    const ctx = canvas.getContext("2d");
    const src = CS.net.views.input.canvases[0];
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, size, size);
    ctx.drawImage(src, 0, 0, W * c, H * c);
    const x0 = Math.max(0, win.x0), y0 = Math.max(0, win.y0), x1 = Math.min(W - 1, win.x1), y1 = Math.min(H - 1, win.y1);
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
    const [H, W] = CS.net.inputHW();
    const v = d ? CS.fmt(d.value(m, y * l.shape[2] + x)) : "–";
    const parts = [CS.el("h3", { text: `${l.name} · map ${m} · unit (${y}, ${x}) = ${v}` }),
      CS.el("p", { class: "hint", text: `sees input rows ${win.y0}…${win.y1}, columns ${win.x0}…${win.x1} ` +
        `(${l.rf[0]}×${l.rf[1]}, the largest along its paths; outside 0…${H - 1} × 0…${W - 1} is padding). Click for the computation.` }),
      CS.el("div", { class: "side" }, miniInput(win), CS.el("span", { class: "hint", text: "its window on the input" }))];
    const holder = CS.el("div", { class: "kernel-holder" });
    parts.push(holder);
    p.replaceChildren(...parts);
    if (l.kind === "conv") {
      kernelOf(l, m).then((k) => {
        if (CS.net.pinned) return;
        holder.replaceChildren(CS.el("p", { text: `kernel ${m} (${k.shape.join("×")}${k.shape[0] > 1 ? ", one slice per input channel" : ""}), bias ${CS.fmt(k.bias)}:` }), kernelFigure(k, m));
      }).catch(() => {});
    } else if (l.kind === "maxpool" || l.kind === "avgpool") {
      holder.append(CS.el("p", { text: `${l.kind === "maxpool" ? "the largest" : "the mean"} of a window of map ${m} of ${l.inputs[0]}; no weights.` }));
    } else {
      holder.append(CS.el("p", { text: `${l.kind} of ${l.inputs.join(", ")}. Click for the computation.` }));
    }
  };

  ins.fc = function (l, i) {
    const d = CS.net.acts[l.name];
    const v = d ? d.value(0, i) : null;
    const out = CS.net.isOutput(l);
    const label = out ? ` (class ${CS.net.model.classes[i]})` : "";
    CS.net.highlight({ y0: 0, x0: 0, y1: CS.net.inputHW()[0] - 1, x1: CS.net.inputHW()[1] - 1 });
    panel().replaceChildren(CS.el("h3", { text: `${l.name} · unit ${i}${label} = ${v === null ? "–" : CS.fmt(v)}` }),
      CS.el("p", { class: "hint", text: `A fully connected unit sees every value of ${l.inputs[0]}, so its receptive field is the whole input. ` +
        "Click for its weights" + (out ? " and how softmax turns the logit into a probability." : ".") }));
  };

  // A fully connected unit: Σ w·x + b written out (largest terms first), and for the output
  // layer the softmax that turns its logit into the probability shown in the bars.
  ins.explainFc = async function (l, i) {
    if (!CS.net.response) return;
    const out = CS.el("div", { class: "computation", "data-testid": "computation" });
    out.append(CS.el("h3", { text: `${l.name} · unit ${i}: the computation` }));
    panel().replaceChildren(out);
    if (l.kind !== "fc") { out.append(CS.el("p", { text: `${l.kind} of ${l.inputs.join(", ")}.` })); return addUnpin(out); }
    const w = await CS.engine.weights(l.name, i);
    const src = await CS.net.load(l.inputs[0], { all: true });
    const xs = w.weight.map((_, j) => {
      const prev = CS.net.byName[l.inputs[0]];
      const per = prev.shape.length === 3 ? prev.shape[1] * prev.shape[2] : prev.shape[0];
      return prev.shape.length === 3 ? src.value(Math.floor(j / per), j % per) : src.value(0, j);
    });
    const terms = w.weight.map((wj, j) => ({ j, wj, x: xs[j], p: wj * xs[j] }));
    const z = terms.reduce((a, t) => a + (Number.isFinite(t.p) ? t.p : 0), 0) + w.bias;
    const act = l.activation === "relu" ? Math.max(0, z) : z;
    const top = [...terms].sort((a, b) => Math.abs(b.p) - Math.abs(a.p)).slice(0, 8);
    out.dataset.z = z; out.dataset.activation = act;
    out.append(CS.el("p", { text: `${w.weight.length} weights, one per value of ${l.inputs[0]}; the largest products:` }));
    out.append(table([top.map((t) => t.x)], {}), CS.el("p", { class: "hint", text: "× weights" }), table([top.map((t) => t.wj)], { colour: "weights" }));
    out.append(CS.el("p", { class: "formula", text: `z = Σ w·x + b = ${CS.fmt(z - w.bias)} ${w.bias < 0 ? "−" : "+"} ${CS.fmt(Math.abs(w.bias))} (bias) = ${CS.fmt(z)}` +
      (l.activation === "relu" ? ` → ReLU: ${CS.fmt(act)}` : "") }));
    if (CS.net.isOutput(l)) {
      const d = CS.net.acts[l.name];
      const logits = Array.from({ length: l.shape[0] }, (_, k) => d.value(0, k));
      const mx = Math.max(...logits);
      const sum = logits.reduce((a, v) => a + Math.exp(v - mx), 0);
      const p = Math.exp(z - mx) / sum;
      out.dataset.probability = p;
      out.append(CS.el("p", { class: "formula", text: `softmax: p(${CS.net.model.classes[i]}) = e^z / Σ_k e^(z_k) = e^${CS.fmt(z)} / Σ over the ${logits.length} logits = ${(p * 100).toFixed(2)}%` }));
      out.append(CS.el("p", { class: "hint", text: "The logits are only compared with each other: adding the same number to all of them changes no probability." }));
    }
    addUnpin(out);
  };

  ins.nothingYet = function () {
    panel().replaceChildren(CS.el("p", { class: "hint", "data-testid": "nothing-yet",
      text: "Nothing has been fed to the network yet: draw, upload or pick a sample first, then click a unit." }));
  };

  function addUnpin(out) {
    const close = CS.el("button", { type: "button", text: "unpin", "data-testid": "unpin" });
    close.addEventListener("click", () => { CS.net.pinned = null; CS.net.highlight(null); panel().replaceChildren(CS.el("p", { class: "hint", text: "Hover a unit, or click one to pin its computation here." })); });
    out.prepend(CS.el("p", { class: "pinned-note", text: "📌 pinned: hovering no longer changes this panel" }), close);
  }

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

  function explainConv(l, m, y, x, out, k) {
    const w = k.weight;
    const per = w.length, groups = l.groups || 1;
    const off = groups > 1 ? Math.floor(m / (l.shape[0] / groups)) * per : 0;  // grouped/depthwise: this group's inputs
    const sums = w.map((kc, c) => {
      const pt = patch(l, c + off, y, x);
      return { pt, prod: pt.map((r, i) => r.map((v, j) => (v ?? 0) * kc[i][j])) };
    });
    sums.forEach((s) => { s.sum = s.prod.flat().reduce((a, b) => a + b, 0); });
    const total = sums.reduce((a, s) => a + s.sum, 0);
    const z = total + k.bias;
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
    out.append(CS.el("p", { class: "formula", text: `dot product ${terms} ${signedSum([k.bias], true)} (bias) = ${CS.fmt(z)}${act}` }));
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

  function explainElementwise(l, m, y, x, out, bn) {
    const i = l.shape.length === 3 ? y * l.shape[2] + x : m;
    let z;
    if (l.kind === "bn") {
      const v = inputValue(l, m, y, x);
      z = v * bn.scale + bn.shift;
      out.append(CS.el("p", { class: "formula", text: `batch norm: ${CS.fmt(v)} × ${CS.fmt(bn.scale)} ${bn.shift < 0 ? "−" : "+"} ${CS.fmt(Math.abs(bn.shift))} = ${CS.fmt(z)}` }),
        CS.el("p", { class: "hint", text: `scale = γ / √(running var + ε) = ${CS.fmt(bn.gamma)} / √(${CS.fmt(bn.var)} + ${bn.eps}); shift = β − mean × scale` }));
    } else if (l.kind === "add") {
      const vals = l.inputs.map((n) => CS.net.acts[n].value(m, i));
      z = vals.reduce((a, v) => a + v, 0);
      out.append(CS.el("p", { class: "formula", text: `${l.inputs.map((n, j) => `${n} ${CS.fmt(vals[j])}`).join(" + ")} = ${CS.fmt(z)}` }));
    } else {
      out.append(CS.el("p", { text: `${l.kind} of ${l.inputs.join(", ")} (no arithmetic to write out here).` }));
      z = CS.net.acts[l.name].value(m, i);
    }
    const a = l.activation === "relu" ? Math.max(0, z) : z;
    if (l.activation === "relu") out.append(CS.el("p", { class: "formula", text: `→ ReLU: max(0, ${CS.fmt(z)}) = ${CS.fmt(a)}` }));
    return { z, a };
  }

  ins.explain = async function (l, m, y, x) {
    if (!CS.net.response) return;
    const out = CS.el("div", { class: "computation", "data-testid": "computation" });
    out.append(CS.el("h3", { text: `${l.name} · map ${m} · unit (${y}, ${x}): the computation` }));
    out.append(CS.el("div", { class: "side" }, miniInput(CS.net.window(l, y, x)),
      CS.el("span", { class: "hint", text: "its window on the input" })));
    // every map the unit reads, in full
    for (const name of l.inputs) await CS.net.load(name, { all: true });
    let r;
    if (l.kind === "conv") r = explainConv(l, m, y, x, out, await kernelOf(l, m));
    else if (l.kind === "maxpool" || l.kind === "avgpool") r = explainPool(l, m, y, x, out);
    else r = explainElementwise(l, m, y, x, out, l.kind === "bn" ? await CS.engine.weights(l.name, m) : null);
    const net = CS.net.acts[l.name].value(m, y * l.shape[2] + x);
    out.dataset.z = r.z; out.dataset.activation = r.a; out.dataset.network = net;
    out.append(CS.el("p", { class: "hint", text: `the network's own value: ${CS.fmt(net)} (sent as 8 bits of its map's range)` }));
    addUnpin(out);
    panel().replaceChildren(out);
    const box = panel().getBoundingClientRect();  // phones: the panel is not sticky, bring it into view
    if (box.bottom < 0 || box.top > window.innerHeight) panel().scrollIntoView({ block: "start" });
  };
})();
