// Colour scale and pixel painting shared by the views (no dependencies).
"use strict";

const CS = (window.CS = window.CS || {});

// Viridis (matplotlib's perceptually uniform map), 9 stops interpolated to 256.
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
CS.LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (VIRIDIS.length - 1);
    const k = Math.min(Math.floor(t), VIRIDIS.length - 2);
    const f = t - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = VIRIDIS[k][c] * (1 - f) + VIRIDIS[k + 1][c] * f;
  }
  return lut;
})();

// uint8 values (0..255) -> RGBA pixels on a canvas of w x h, coloured or grey.
CS.paint = function (canvas, q, w, h, offset = 0, grey = false) {
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const v = q[offset + i];
    const o = i * 4;
    if (grey) { img.data[o] = img.data[o + 1] = img.data[o + 2] = v; }
    else { img.data[o] = CS.LUT[v * 3]; img.data[o + 1] = CS.LUT[v * 3 + 1]; img.data[o + 2] = CS.LUT[v * 3 + 2]; }
    img.data[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
};

// A 28x28 list of floats in [0, 1] -> grey pixels.
CS.paintFloats = function (canvas, rows) {
  const h = rows.length, w = rows[0].length;
  const q = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) q[y * w + x] = Math.round(rows[y][x] * 255);
  CS.paint(canvas, q, w, h, 0, true);
};

CS.paintScale = function (canvas) {
  const q = new Uint8Array(256);
  for (let i = 0; i < 256; i++) q[i] = i;
  CS.paint(canvas, q, 256, 1);
};

// A layer of a prediction or of engine.layer() -> {q: Uint8Array, value(channel, i): float, has(channel)}.
// A layer may carry only some of its maps ("maps" lists which, in the order sent).
CS.decodeLayer = function (layer) {
  const bin = atob(layer.data);
  const q = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) q[i] = bin.charCodeAt(i);
  const n = layer.map_min.length;
  const per = n ? q.length / n : 0;
  const maps = layer.maps || Array.from({ length: n }, (_, i) => i);
  const pos = new Map(maps.map((m, i) => [m, i]));
  return {
    q, per, maps: n, layer, pos,
    has(c) { return pos.has(c); },
    value(c, i) {
      const p = pos.get(c);
      if (p === undefined) return NaN;
      return layer.map_min[p] + (q[p * per + i] / 255) * (layer.map_max[p] - layer.map_min[p]);
    },
  };
};

CS.fmt = function (v, digits = 3) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.001) return v.toExponential(2);
  return v.toFixed(digits);
};

CS.el = function (tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
