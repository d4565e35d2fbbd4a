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

  // What unitmath.js reads: the layers' descriptions and the values this page holds for them.
  // The fed image comes twice: as an 8-bit map and (small inputs) to 4 decimals; the finer one is read.
  function context() {
    const fed = CS.net.response && CS.net.response.input;
    const value = (n, c, i) => {
      if (n !== "input" || !fed) return CS.net.acts[n].value(c, i);
      const [C, , W] = CS.net.byName.input.shape;
      return (C === 1 ? fed : fed[c])[Math.floor(i / W)][i % W];
    };
    return { layer: (n) => CS.net.byName[n], value, normalization: CS.net.model.normalization };
  }

  // The kernel of one output channel: sent with the model for small layers, fetched otherwise.
  const fetched = {};
  async function kernelOf(l, m) {
    const k = CS.net.model.kernels[l.name];
    if (k) return { shape: k.shape.slice(1), weight: k.weight[m], bias: k.bias[m] };
    const key = `${CS.net.model.version}/${l.name}/${m}`;  // a new model (Train tab) has new weights
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
        `(${l.rf[0]}×${l.rf[1]}, every path's window together; outside 0…${H - 1} × 0…${W - 1} is padding). Click for the computation.` }),
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
      holder.append(CS.el("p", { text: `${l.kind === "maxpool" ? "the largest" : "the mean"} of a window of map ${m} of ${l.inputs[0]}` +
        `${l.kind === "avgpool" && l.count_include_pad === false ? " (padding not counted)" : ""}; no weights.` }));
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
    await CS.net.load(l.inputs[0], { all: true });
    const r = CS.unitMath.explain(l, i, 0, 0, context(), w);
    if (r.unexplained) { out.append(CS.el("p", { text: r.unexplained })); return addUnpin(out); }
    const z = r.z, act = r.a;
    const top = [...r.terms].sort((a, b) => Math.abs(b.p) - Math.abs(a.p)).slice(0, 8);
    out.dataset.z = z; out.dataset.activation = act;
    out.append(CS.el("p", { text: `${w.weight.length} weights, one per value of ${l.inputs[0]}; the largest products:` }));
    out.append(table([top.map((t) => t.x)], {}), CS.el("p", { class: "hint", text: "× weights" }), table([top.map((t) => t.w)], { colour: "weights" }));
    out.append(CS.el("p", { class: "formula", text: `z = Σ w·x + b = ${CS.fmt(z - w.bias)} ${w.bias < 0 ? "−" : "+"} ${CS.fmt(Math.abs(w.bias))} (bias) = ${CS.fmt(z)}` +
      activationText(r) }));
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

  // "0.5 − 0.2 + 1.3": terms joined with their signs (`more`: the first one gets a sign too).
  function signedSum(values, more = false) {
    return values.map((v, i) => (i === 0 && !more ? CS.fmt(v) : `${v < 0 ? "−" : "+"} ${CS.fmt(Math.abs(v))}`)).join(" ");
  }

  // " → ReLU: max(0, z) = a", the folded activation as the server names it (empty when none)
  function activationText(r) {
    if (!r.activation) return "";
    const how = CS.unitMath.ACTIVATIONS[r.activation][1];
    return ` → ${how.replace(/z/g, CS.fmt(r.z))} = ${CS.fmt(r.a)}`;
  }

  function showConv(l, m, r, k, out) {
    const w = k.weight;
    const show = (c) => CS.el("div", { class: "calc" },
      CS.el("figure", {}, table(r.slices[c].patch), CS.el("figcaption", { text: c === 0 && w.length === 1 ? "input patch (normalised)" : `input patch, map ${r.slices[c].channel}` })),
      CS.el("span", { class: "op", text: "⊙" }),
      CS.el("figure", {}, table(w[c], { colour: "weights" }), CS.el("figcaption", { text: `kernel ${m}` + (w.length > 1 ? `, slice ${c}` : "") })),
      CS.el("span", { class: "op", text: "=" }),
      CS.el("figure", {}, table(r.slices[c].prod), CS.el("figcaption", { text: `products, Σ = ${CS.fmt(r.slices[c].sum)}` })));
    const holder = CS.el("div", {}, show(0));
    if (w.length > 1) {
      const sel = CS.el("select", { "aria-label": "input map" });
      r.slices.forEach((s, c) => sel.append(CS.el("option", { value: c, text: `input map ${s.channel}: Σ = ${CS.fmt(s.sum)}` })));
      sel.addEventListener("change", () => holder.replaceChildren(show(Number(sel.value))));
      out.append(CS.el("p", { text: `${w.length} input maps, one kernel slice each; showing ` }, sel));
      out.append(CS.el("p", { class: "hint", text: "(the layer before travels as 8-bit values, so this sum is close to, not exactly, the network's)" }));
    }
    out.append(holder);
    const terms = w.length > 1 ? signedSum(r.slices.map((s) => s.sum)) : CS.fmt(r.slices[0].sum);
    out.append(CS.el("p", { class: "formula", text: `dot product ${terms} ${signedSum([r.bias], true)} (bias) = ${CS.fmt(r.z)}${activationText(r)}` }));
  }

  function showPool(l, m, r, out) {
    out.append(CS.el("div", { class: "calc" }, CS.el("figure", {}, table(r.patch, { pad: r.patch.map((row) => row.map((v) => v === null)) }),
      CS.el("figcaption", { text: `window of map ${m}` }))));
    if (r.kind === "maxpool") { out.append(CS.el("p", { class: "formula", text: `max = ${CS.fmt(r.z)}${activationText(r)}` })); return; }
    const why = { padding: "the window, padding included (count_include_pad)", values: "the values inside the input (padding not counted)", override: "the layer's divisor_override" }[r.counted];
    out.append(CS.el("p", { class: "formula", text: `mean = ${CS.fmt(r.sum)} / ${r.divisor} = ${CS.fmt(r.z)}${activationText(r)}` }),
      CS.el("p", { class: "hint", text: `divided by ${r.divisor}: ${why}` }));
  }

  function showElementwise(l, m, r, out, bn) {
    if (r.kind === "bn") {
      out.append(CS.el("p", { class: "formula", text: `batch norm: ${CS.fmt(r.v)} × ${CS.fmt(r.scale)} ${r.shift < 0 ? "−" : "+"} ${CS.fmt(Math.abs(r.shift))} = ${CS.fmt(r.z)}${activationText(r)}` }),
        CS.el("p", { class: "hint", text: `scale = γ / √(running var + ε) = ${CS.fmt(bn.gamma)} / √(${CS.fmt(bn.var)} + ${bn.eps}); shift = β − mean × scale` }));
    } else if (r.kind === "add" || r.kind === "mul") {
      out.append(CS.el("p", { class: "formula", text: `${r.names.map((n, j) => `${n} ${CS.fmt(r.vals[j])}`).join(r.kind === "add" ? " + " : " × ")} = ${CS.fmt(r.z)}${activationText(r)}` }));
    } else if (r.kind === "concat") {
      out.append(CS.el("p", { class: "formula", text: `map ${m} of the concatenation is map ${r.channel} of ${r.from}: ${CS.fmt(r.z)}${activationText(r)}` }));
    } else {
      out.append(CS.el("p", { class: "formula", text: `${l.inputs[0]} ${CS.fmt(r.v)}${activationText(r)}` }));
    }
  }

  ins.explain = async function (l, m, y, x) {
    if (!CS.net.response) return;
    const out = CS.el("div", { class: "computation", "data-testid": "computation" });
    out.append(CS.el("h3", { text: `${l.name} · map ${m} · unit (${y}, ${x}): the computation` }));
    out.append(CS.el("div", { class: "side" }, miniInput(CS.net.window(l, y, x)),
      CS.el("span", { class: "hint", text: "its window on the input" })));
    // every map the unit reads, in full
    for (const name of l.inputs) await CS.net.load(name, { all: true });
    const weights = l.kind === "conv" ? await kernelOf(l, m) : l.kind === "bn" ? await CS.engine.weights(l.name, m) : null;
    const r = CS.unitMath.explain(l, m, y, x, context(), weights);
    if (r.unexplained) out.append(CS.el("p", { text: `${r.unexplained}; the network's value is shown below.` }));
    else if (r.kind === "conv") showConv(l, m, r, weights, out);
    else if (r.kind === "maxpool" || r.kind === "avgpool") showPool(l, m, r, out);
    else showElementwise(l, m, r, out, weights);
    const net = CS.net.acts[l.name].value(m, y * l.shape[2] + x);
    if (!r.unexplained) { out.dataset.z = r.z; out.dataset.activation = r.a; }
    out.dataset.network = net;
    out.append(CS.el("p", { class: "hint", text: `the network's own value: ${CS.fmt(net)} (sent as 8 bits of its map's range)` }));
    addUnpin(out);
    panel().replaceChildren(out);
    const box = panel().getBoundingClientRect();  // phones: the panel is not sticky, bring it into view
    if (box.bottom < 0 || box.top > window.innerHeight) panel().scrollIntoView({ block: "start" });
  };
})();
