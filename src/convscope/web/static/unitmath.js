// The arithmetic of one unit, written out: what inspect.js shows when a unit is clicked.
// Every fact it uses comes from the layer's description in /api/model (kernel, stride,
// padding and its mode, dilation, groups, ceil_mode, count_include_pad, divisor_override,
// adaptive, the folded activation and its parameters); nothing here re-derives one.
// A fact the description does not carry makes the unit "not written out" with the reason,
// never a guess. Works in the browser (window.CS.unitMath) and in Node (module.exports),
// where tests/parity runs it against the network's own values.
"use strict";

(function (root) {
  const relu6 = (v) => Math.min(Math.max(v, 0), 6);
  const sigmoid = (v) => 1 / (1 + Math.exp(-v));
  const softplus = (v) => (v > 20 ? v : Math.log1p(Math.exp(v)));  // torch's default threshold, as Mish uses it

  // erf to ~1e-15 (series near 0, continued fraction in the tails): GELU is x * Phi(x)
  function erf(x) {
    const ax = Math.abs(x);
    if (ax < 2.5) {
      let sum = ax, term = ax;
      for (let n = 1; n < 120 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
        term *= (2 * ax * ax) / (2 * n + 1);
        sum += term;
      }
      return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
    }
    let f = 0;  // erfc by Lentz-free backward continued fraction
    for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
    const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
    return Math.sign(x) * (1 - erfc);
  }

  // name -> [function of (z, layer), how the page writes it]; parameters are the layer's own keys
  const ACTIVATIONS = {
    relu: [(z) => Math.max(0, z), "ReLU: max(0, z)"],
    relu6: [relu6, "ReLU6: min(max(0, z), 6)"],
    leakyrelu: [(z, l) => (z >= 0 ? z : param(l, "negative_slope") * z), "LeakyReLU: z ≥ 0 ? z : slope·z"],
    elu: [(z, l) => (z > 0 ? z : param(l, "alpha") * Math.expm1(z)), "ELU: z > 0 ? z : α(e^z − 1)"],
    hardtanh: [(z, l) => Math.min(Math.max(z, param(l, "min_val")), param(l, "max_val")), "Hardtanh: clamp(z, min, max)"],
    selu: [(z) => 1.0507009873554804934193349852946 * (z > 0 ? z : 1.6732632423543772848170429916717 * Math.expm1(z)), "SELU"],
    tanh: [Math.tanh, "tanh(z)"],
    sigmoid: [sigmoid, "sigmoid: 1 / (1 + e^−z)"],
    silu: [(z) => z * sigmoid(z), "SiLU: z·sigmoid(z)"],
    gelu: [(z, l) => (word(l, "approximate") === "tanh"
      ? 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3)))
      : 0.5 * z * (1 + erf(z / Math.SQRT2))), "GELU: z·Φ(z)"],
    hardswish: [(z) => (z * relu6(z + 3)) / 6, "Hardswish: z·ReLU6(z + 3)/6"],
    hardsigmoid: [(z) => relu6(z + 3) / 6, "Hardsigmoid: ReLU6(z + 3)/6"],
    mish: [(z) => z * Math.tanh(softplus(z)), "Mish: z·tanh(softplus(z))"],
  };

  class Unexplained extends Error {}
  function param(l, key) {
    if (typeof l[key] !== "number") throw new Unexplained(`${l.name}: the model description gives no ${key}`);
    return l[key];
  }

  function word(l, key) {
    if (typeof l[key] !== "string") throw new Unexplained(`${l.name}: the model description gives no ${key}`);
    return l[key];
  }

  function activate(name, z, l) {
    if (name === null || name === undefined) return z;
    const a = ACTIVATIONS[name];
    if (!a) throw new Unexplained(`${l.name}: the activation ${name} is not one this page writes out`);
    return a[0](z, l);
  }

  // padding {top, bottom, left, right}: [p_h, p_w] is symmetric; TF "SAME" sends all four sides
  function sides(l) {
    const p = l.padding;
    if (l.padding_mode === "same_tf" || (Array.isArray(p) && p.length === 4)) {
      if (!Array.isArray(p) || p.length !== 4) throw new Unexplained(`${l.name}: TF-SAME padding without its four sides`);
      return { top: p[0], bottom: p[1], left: p[2], right: p[3] };
    }
    if (!Array.isArray(p) || p.length !== 2) throw new Unexplained(`${l.name}: the model description gives no padding`);
    return { top: p[0], bottom: p[0], left: p[1], right: p[1] };
  }

  // ctx: {layer(name) -> description, value(name, c, i) -> the shown value, normalization}
  function sourceOf(ctx, l, k = 0) {
    const src = ctx.layer(l.inputs[k]);
    if (!src) throw new Unexplained(`${l.name} reads ${l.inputs[k]}, which the page does not have`);
    return src;
  }

  // the value a layer reads from `src` at channel c, row y, column x (null in the padding);
  // the input is shown un-normalised, and the network reads it normalised
  function read(ctx, src, c, y, x) {
    if (src.shape.length !== 3) return ctx.value(src.name, 0, c);
    const [, h, w] = src.shape;
    if (y < 0 || x < 0 || y >= h || x >= w) return null;
    const v = ctx.value(src.name, c, y * w + x);
    if (src.kind !== "input") return v;
    const n = ctx.normalization;
    return (v - n.mean[c % n.mean.length]) / n.std[c % n.std.length];
  }

  function need(l, keys) { for (const k of keys) if (!Array.isArray(l[k])) throw new Unexplained(`${l.name}: the model description gives no ${k}`); }

  // the kernel-sized window of unit (y, x) on channel c: rows of values (null: padding / outside)
  function windowOf(ctx, l, src, c, y, x, pad, dil = l.dilation) {
    const rows = [];
    for (let ky = 0; ky < l.kernel[0]; ky++) {
      const row = [];
      for (let kx = 0; kx < l.kernel[1]; kx++) {
        row.push(read(ctx, src, c, y * l.stride[0] - pad.top + ky * dil[0], x * l.stride[1] - pad.left + kx * dil[1]));
      }
      rows.push(row);
    }
    return rows;
  }

  // weights: {weight: [in/groups][kh][kw], bias} of output channel m
  function conv(ctx, l, m, y, x, weights) {
    need(l, ["kernel", "stride", "dilation"]);
    const src = sourceOf(ctx, l), pad = sides(l);
    const groups = l.groups ?? 1, per = weights.weight.length;
    const first = Math.floor(m / (l.shape[0] / groups)) * per;  // grouped / depthwise: this group's inputs
    const slices = weights.weight.map((kc, c) => {
      const patch = windowOf(ctx, l, src, first + c, y, x, pad);
      const prod = patch.map((r, i) => r.map((v, j) => (v ?? 0) * kc[i][j]));
      return { channel: first + c, patch, prod, sum: prod.flat().reduce((a, b) => a + b, 0) };
    });
    const z = slices.reduce((a, s) => a + s.sum, 0) + weights.bias;
    return { kind: "conv", slices, bias: weights.bias, z };
  }

  function pool(ctx, l, m, y, x) {
    const src = sourceOf(ctx, l);
    const max = l.kind === "maxpool";
    if (l.adaptive) return adaptivePool(ctx, l, src, m, y, x, max);
    need(l, ["kernel", "stride"]);
    const pad = sides(l), dil = l.dilation || [1, 1];
    const patch = windowOf(ctx, l, src, m, y, x, pad, dil);
    const vals = patch.flat().filter((v) => v !== null);
    if (max) return { kind: "maxpool", patch, z: Math.max(...vals) };
    if (dil[0] !== 1 || dil[1] !== 1) throw new Unexplained(`${l.name}: an average pool with dilation`);
    if (typeof l.count_include_pad !== "boolean") throw new Unexplained(`${l.name}: the model description does not say whether the padding is counted (count_include_pad)`);
    // PyTorch's divisor: the window clipped to the padded input (ceil_mode windows may hang past it),
    // or only the real values when count_include_pad is false, or divisor_override
    const [, h, w] = src.shape;
    const y0 = y * l.stride[0] - pad.top, x0 = x * l.stride[1] - pad.left;
    const padded = (Math.min(y0 + l.kernel[0], h + pad.bottom) - y0) * (Math.min(x0 + l.kernel[1], w + pad.right) - x0);
    const divisor = l.divisor_override ? l.divisor_override : l.count_include_pad ? padded : vals.length;
    const sum = vals.reduce((s, v) => s + v, 0);
    return { kind: "avgpool", patch, sum, divisor, counted: l.divisor_override ? "override" : l.count_include_pad ? "padding" : "values", z: sum / divisor };
  }

  function adaptivePool(ctx, l, src, m, y, x, max) {
    const [, h, w] = src.shape, [, oh, ow] = l.shape;
    const y0 = Math.floor((y * h) / oh), y1 = Math.ceil(((y + 1) * h) / oh);
    const x0 = Math.floor((x * w) / ow), x1 = Math.ceil(((x + 1) * w) / ow);
    const patch = [];
    for (let iy = y0; iy < y1; iy++) { const row = []; for (let ix = x0; ix < x1; ix++) row.push(read(ctx, src, m, iy, ix)); patch.push(row); }
    const vals = patch.flat();
    const sum = vals.reduce((s, v) => s + v, 0);
    return max ? { kind: "maxpool", patch, z: Math.max(...vals) }
      : { kind: "avgpool", patch, sum, divisor: vals.length, counted: "values", z: sum / vals.length };
  }

  // weights: {weight: [n], bias}; the input flattened channel by channel, as flatten() does
  function fc(ctx, l, weights) {
    const src = sourceOf(ctx, l);
    const per = src.shape.length === 3 ? src.shape[1] * src.shape[2] : null;
    const terms = weights.weight.map((wj, j) => {
      const xj = per === null ? ctx.value(src.name, 0, j) : readFlat(ctx, src, j, per);
      return { j, w: wj, x: xj, p: wj * xj };
    });
    const z = terms.reduce((a, t) => a + t.p, 0) + weights.bias;
    return { kind: "fc", terms, bias: weights.bias, z };
  }
  function readFlat(ctx, src, j, per) {
    const c = Math.floor(j / per), i = j % per;
    return read(ctx, src, c, Math.floor(i / src.shape[2]), i % src.shape[2]);
  }

  // the value of `src` at the unit's own place (vectors: index m; broadcast (C,1,1) inputs: their one pixel)
  function samePlace(ctx, src, m, y, x) {
    if (src.shape.length !== 3) return ctx.value(src.name, 0, m);
    const [, h, w] = src.shape;
    return read(ctx, src, m, h === 1 ? 0 : y, w === 1 ? 0 : x);
  }

  function elementwise(ctx, l, m, y, x, weights) {
    const srcs = l.inputs.map((_, k) => sourceOf(ctx, l, k));
    if (l.kind === "bn") {
      const v = samePlace(ctx, srcs[0], m, y, x);
      return { kind: "bn", v, scale: weights.scale, shift: weights.shift, z: v * weights.scale + weights.shift };
    }
    if (l.kind === "add" || l.kind === "mul") {
      if (srcs.length < 2) throw new Unexplained(`${l.name}: a ${l.kind} with a constant the description does not give`);
      const vals = srcs.map((s) => samePlace(ctx, s, m, y, x));
      return { kind: l.kind, names: l.inputs, vals, z: vals.reduce((a, v) => (l.kind === "add" ? a + v : a * v), l.kind === "add" ? 0 : 1) };
    }
    if (l.kind === "concat") {
      let c = m;
      for (const s of srcs) {
        const n = s.shape[0];
        if (c < n) return { kind: "concat", from: s.name, channel: c, z: samePlace(ctx, s, c, y, x) };
        c -= n;
      }
      throw new Unexplained(`${l.name}: channel ${m} is past its inputs' ${m - c}`);
    }
    if (ACTIVATIONS[l.kind]) {  // an activation shown as a layer of its own
      const v = samePlace(ctx, srcs[0], m, y, x);
      return { kind: "activation", v, z: v, own: l.kind };
    }
    throw new Unexplained(`${l.kind} of ${l.inputs.join(", ")}: no arithmetic this page writes out`);
  }

  // The unit (m, y, x) of layer l (vectors: unit m, y = x = 0) written out:
  // {kind, z (before the activation), a (the unit's value), activation, ...the parts shown},
  // or {unexplained: reason}. `weights`: what /api/weights answers for conv, fc and bn units.
  function explain(l, m, y, x, ctx, weights = null) {
    try {
      let r;
      if (l.kind === "conv") r = conv(ctx, l, m, y, x, weights);
      else if (l.kind === "maxpool" || l.kind === "avgpool") r = pool(ctx, l, m, y, x);
      else if (l.kind === "fc") r = fc(ctx, l, weights);
      else r = elementwise(ctx, l, m, y, x, weights);
      const act = r.own || l.activation || null;
      r.activation = act;
      r.a = activate(act, r.z, l);
      return r;
    } catch (err) {
      if (err instanceof Unexplained) return { unexplained: err.message };
      throw err;
    }
  }

  const api = { explain, activate, ACTIVATIONS, sides, erf };
  root.CS = root.CS || {};
  root.CS.unitMath = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof window !== "undefined" ? window : globalThis);
