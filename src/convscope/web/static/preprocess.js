// The run's preprocessing in JavaScript: what src/convscope/data/preprocess.py does in Python,
// step for step, so the in-browser engine feeds the network what the server would.
// Pillow's resampling (Resample.c: separable, horizontal pass then vertical, coefficients
// from the filter at (x - centre + 0.5) / scale, normalised) is reproduced for float images
// ("F" mode, double sums stored as float32) and 8-bit ones (22-bit fixed point).
// Works in the browser (window.CS.preprocess) and in Node (module.exports), for the tests.
"use strict";

(function (root) {
  const f32 = Math.fround;
  const MNIST = 28, BOX = 20, VISIBLE = 1 / 255;

  const sinc = (x) => { if (x === 0) return 1; x *= Math.PI; return Math.sin(x) / x; };
  const FILTERS = {
    box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
    bilinear: { support: 1, f: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
    lanczos: { support: 3, f: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  };

  // Python's round(): halves to even.
  function roundHalfEven(v) {
    const r = Math.round(v);
    return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function coeffs(inSize, outSize, filter) {
    const scale = inSize / outSize;
    const fs = Math.max(scale, 1);
    const support = filter.support * fs;
    const ss = 1 / fs;  // Pillow multiplies by 1/filterscale (dividing differs in the last bit)
    const out = [];
    for (let xx = 0; xx < outSize; xx++) {
      const centre = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(centre + support + 0.5), inSize) - xmin;
      const k = new Float64Array(Math.max(xmax, 0));
      let ww = 0;
      for (let x = 0; x < xmax; x++) { k[x] = filter.f((x + xmin - centre + 0.5) * ss); ww += k[x]; }
      if (ww !== 0) for (let x = 0; x < xmax; x++) k[x] /= ww;
      out.push({ xmin, k });
    }
    return out;
  }

  // One pass along x (horizontal) of a (h, w) image stored row-major; `store` rounds each value.
  function passX(src, h, w, outW, cs, store) {
    const dst = new Float64Array(h * outW);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < outW; xx++) {
        const { xmin, k } = cs[xx];
        let ss = 0;
        for (let x = 0; x < k.length; x++) ss += src[y * w + xmin + x] * k[x];
        dst[y * outW + xx] = store(ss);
      }
    }
    return dst;
  }

  function passY(src, h, w, outH, cs, store) {
    const dst = new Float64Array(outH * w);
    for (let yy = 0; yy < outH; yy++) {
      const { xmin, k } = cs[yy];
      for (let x = 0; x < w; x++) {
        let ss = 0;
        for (let y = 0; y < k.length; y++) ss += src[(xmin + y) * w + x] * k[y];
        dst[yy * w + x] = store(ss);
      }
    }
    return dst;
  }

  // Pillow's Image.resize for a float32 ("F") image: (h, w) -> (outH, outW).
  function resizeF(src, h, w, outH, outW, name) {
    const filter = FILTERS[name];
    let a = src, cw = w;
    if (outW !== w) { a = passX(a, h, w, outW, coeffs(w, outW, filter), f32); cw = outW; }
    if (outH !== h) a = passY(a, h, cw, outH, coeffs(h, outH, filter), f32);
    return a;
  }

  // Pillow's 8-bit resize: coefficients in 22-bit fixed point, each pass rounds and clips to 0..255.
  const PRECISION = 22;
  function fixed(cs) {
    return cs.map(({ xmin, k }) => ({ xmin, k: Float64Array.from(k, (v) => Math.trunc(v < 0 ? v * (1 << PRECISION) - 0.5 : v * (1 << PRECISION) + 0.5)) }));
  }
  const clip8 = (ss) => { const v = Math.floor((ss + (1 << (PRECISION - 1))) / (1 << PRECISION)); return v < 0 ? 0 : v > 255 ? 255 : v; };
  function resize8(src, h, w, outH, outW, name) {
    const filter = FILTERS[name];
    let a = src, cw = w;
    if (outW !== w) { a = passX(a, h, w, outW, fixed(coeffs(w, outW, filter)), clip8); cw = outW; }
    if (outH !== h) a = passY(a, h, cw, outH, fixed(coeffs(h, outH, filter)), clip8);
    return a;
  }

  // NumPy's pairwise summation (blocks of 128, eight accumulators), rounding with `r`.
  function pairwiseSum(a, r, lo = 0, n = a.length) {
    if (n < 8) { let s = r(0); for (let i = lo; i < lo + n; i++) s = r(s + a[i]); return s; }
    if (n <= 128) {
      const acc = [];
      for (let j = 0; j < 8; j++) acc.push(r(a[lo + j]));
      let i = 8;
      for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) acc[j] = r(acc[j] + a[lo + i + j]);
      let s = r(r(r(acc[0] + acc[1]) + r(acc[2] + acc[3])) + r(r(acc[4] + acc[5]) + r(acc[6] + acc[7])));
      for (; i < n; i++) s = r(s + a[lo + i]);
      return s;
    }
    let n2 = Math.floor(n / 2);
    n2 -= n2 % 8;
    return r(pairwiseSum(a, r, lo, n2) + pairwiseSum(a, r, lo + n2, n - n2));
  }

  function clip01(a) {  // in place (every caller passes a fresh array)
    for (let i = 0; i < a.length; i++) { const v = a[i]; a[i] = v < 0 ? 0 : v > 1 ? 1 : v; }
    return a;
  }

  // ---- the MNIST recipe (preprocess.mnist_style) -------------------------------------------
  function inkBox(g, h, w) {
    let peak = 0;
    for (const v of g) if (v > peak) peak = v;
    if (peak < VISIBLE) return null;
    const t = f32(0.1 * peak);  // NumPy compares a float32 array with a float32 threshold
    let r0 = h, r1 = -1, c0 = w, c1 = -1;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      if (g[y * w + x] > t) { if (y < r0) r0 = y; if (y > r1) r1 = y; if (x < c0) c0 = x; if (x > c1) c1 = x; }
    }
    return { r0, r1: r1 + 1, c0, c1: c1 + 1 };
  }

  function mnistStyle(g, h, w) {
    const out = new Float64Array(MNIST * MNIST);
    const box = inkBox(g, h, w);
    if (!box) return out;
    const ch = box.r1 - box.r0, cw = box.c1 - box.c0;
    const crop = new Float64Array(ch * cw);
    for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = g[(box.r0 + y) * w + box.c0 + x];
    const scale = BOX / Math.max(ch, cw);
    const sh = Math.max(1, roundHalfEven(ch * scale)), sw = Math.max(1, roundHalfEven(cw * scale));
    const patch = clip01(resizeF(crop, ch, cw, sh, sw, "lanczos"));
    let peak = 0;
    for (const v of patch) if (v > peak) peak = v;
    if (peak < VISIBLE) return out;
    for (let i = 0; i < patch.length; i++) patch[i] = f32(patch[i] / f32(peak));
    // the sums as NumPy does them: float32 pairwise for the mass, float64 pairwise for the moments
    const total = pairwiseSum(patch, f32);
    const ys = patch.map((v, i) => Math.floor(i / sw) * v), xs = patch.map((v, i) => (i % sw) * v);
    const cy = pairwiseSum(ys, Number) / total, cx = pairwiseSum(xs, Number) / total, centre = MNIST / 2;
    const top = Math.min(Math.max(roundHalfEven(centre - cy), 0), MNIST - sh);
    const left = Math.min(Math.max(roundHalfEven(centre - cx), 0), MNIST - sw);
    for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) out[(top + y) * MNIST + left + x] = patch[y * sw + x];
    return out;
  }

  const rawDownsample = (g, h, w) => clip01(resizeF(g, h, w, MNIST, MNIST, "box"));

  function median(values) {
    const s = values.sort();
    const n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }

  function borderLevel(g, h, w) {
    const b = Math.max(1, Math.floor(Math.min(h, w) / 20));
    const ring = new Float64Array(2 * b * w + 2 * b * h);
    let k = 0;
    for (let y = 0; y < b; y++) for (let x = 0; x < w; x++) ring[k++] = g[y * w + x];
    for (let y = h - b; y < h; y++) for (let x = 0; x < w; x++) ring[k++] = g[y * w + x];
    for (let y = 0; y < h; y++) for (let x = 0; x < b; x++) ring[k++] = g[y * w + x];
    for (let y = 0; y < h; y++) for (let x = w - b; x < w; x++) ring[k++] = g[y * w + x];
    return median(ring);
  }

  function cleanDigit(g, bg) {
    let peak = 0;
    for (const v of g) if (v > peak) peak = v;
    if (bg < 0.05) return g;
    if (peak - bg < 0.1) return new Float64Array(g.length);
    const span = f32(peak - bg), bg32 = f32(bg), cut = f32(0.2);
    const out = new Float64Array(g.length);
    for (let i = 0; i < g.length; i++) {
      let u = f32(f32(g[i] - bg32) / span);
      u = u < 0 ? 0 : u > 1 ? 1 : u;
      out[i] = u < cut ? 0 : u;
    }
    return out;
  }

  // prepare_digit: 28x28 in [0, 1], white on black, before resizing to the model's size.
  function prepareDigit(g, h, w, pre, preprocess) {
    if (pre.auto_invert !== false) {
      let bg = borderLevel(g, h, w);
      if (bg > 0.5) {  // black ink on light paper: invert (the ring's median inverts with it)
        const inv = new Float64Array(g.length);
        for (let i = 0; i < g.length; i++) inv[i] = f32(1 - g[i]);
        g = inv;
        bg = borderLevel(g, h, w);
      }
      g = cleanDigit(g, bg);
    }
    const x = preprocess ? mnistStyle(g, h, w) : rawDownsample(g, h, w);
    return pre.invert ? x.map((v) => f32(1 - v)) : x;
  }

  /**
   * The network's input for a grey image `g` ((h, w) row-major floats in [0, 1]):
   * {x: Float32Array (C*H*W, normalised), shown: Float64Array (C*H*W, [0, 1])}.
   * config: the run's {"preprocessing", "normalization", "input_size"}.
   */
  function prepare(g, h, w, config, preprocess = true) {
    const pre = config.preprocessing || {};
    const [C, H, W] = config.input_size;
    let img;
    const copy = new Float64Array(g.length);
    for (let i = 0; i < g.length; i++) copy[i] = f32(g[i]);
    g = clip01(copy);
    if (pre.kind === "digits") {
      img = prepareDigit(g, h, w, pre, preprocess);
      if (H !== MNIST || W !== MNIST) img = resizeF(img, MNIST, MNIST, H, W, "bilinear");
    } else {  // "resize": the 8-bit image (a float array is rounded to 8 bits first, as _array_to_pil does)
      return resized([g.map((v) => roundHalfEven(f32(v * 255)))], h, w, config);
    }
    return normalise([img], config);
  }

  // "resize" runs: 8-bit planes (one grey, or R, G, B), plain bilinear resize, as folder datasets are loaded
  function resized(planes, h, w, config) {
    const pre = config.preprocessing || {};
    const [, H, W] = config.input_size;
    return normalise(planes.map((p) => {
      let img = resize8(p, h, w, H, W, "bilinear").map((v) => f32(v / 255));
      if (pre.invert) img = img.map((v) => f32(1 - v));
      return img;
    }), config);
  }

  // planes: one (H*W) plane in [0, 1] per channel, or one plane for every channel
  function normalise(planes, config) {
    const [C, H, W] = config.input_size;
    const mean = config.normalization.mean, std = config.normalization.std;
    const x = new Float32Array(C * H * W), shown = new Float64Array(C * H * W);
    for (let c = 0; c < C; c++) {
      const m = f32(mean[mean.length === 1 ? 0 : c]), s = f32(std[std.length === 1 ? 0 : c]);
      const img = planes[planes.length === 1 ? 0 : c];
      for (let i = 0; i < H * W; i++) {
        const v = f32(img[i]);
        x[c * H * W + i] = f32(f32(v - m) / s);
        const back = f32(f32(x[c * H * W + i] * s) + m);
        shown[c * H * W + i] = back < 0 ? 0 : back > 1 ? 1 : back;
      }
    }
    return { x, shown };
  }

  // RGBA bytes (from a canvas) -> grey floats in [0, 1], as the server reads any image
  // (data/preprocess.py to_gray): Pillow's to_mode(img, 1) / 255, transparency flattened onto the
  // background that shows the ink and rounded to 8 bits there, drawing or uploaded file alike.
  function rgbaToGray(rgba, w, h) {
    return Float64Array.from(pillowPlanes(rgba, w, h, 1)[0], (v) => f32(v / 255));
  }

  // Pillow's to_mode(img, channels) on RGBA bytes: a transparent image flattened onto the
  // background that shows its ink (_flatten_alpha, in float32, rounded to 8 bits), then "L"
  // (ITU-R 601 in fixed point) or "RGB". Returns one plane of 8-bit levels per channel.
  function pillowPlanes(rgba, w, h, channels) {
    const n = w * h;
    let opaque = true;
    for (let i = 0; i < n; i++) if (rgba[4 * i + 3] !== 255) { opaque = false; break; }
    const rgb = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
    if (opaque) {
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) rgb[c][i] = rgba[4 * i + c];
    } else {
      const unit = (v) => f32(v / 255);
      let weight = 0, dark = 0;
      for (let i = 0; i < n; i++) {
        const a = unit(rgba[4 * i + 3]);
        const luma = f32(f32(f32(unit(rgba[4 * i]) * f32(0.299)) + f32(unit(rgba[4 * i + 1]) * f32(0.587))) + f32(unit(rgba[4 * i + 2]) * f32(0.114)));
        weight += a; dark += f32(luma * a);
      }
      const bg = weight > 0 && dark / weight < 0.5 ? 1 : 0;
      for (let i = 0; i < n; i++) {
        const a = unit(rgba[4 * i + 3]), rest = f32(bg * f32(1 - a));
        for (let c = 0; c < 3; c++) rgb[c][i] = roundHalfEven(f32(f32(f32(unit(rgba[4 * i + c]) * a) + rest) * 255));
      }
    }
    if (channels === 3) return rgb;
    const grey = new Float64Array(n);
    for (let i = 0; i < n; i++) grey[i] = (rgb[0][i] * 19595 + rgb[1][i] * 38470 + rgb[2][i] * 7471 + 0x8000) >> 16;
    return [grey];
  }

  /**
   * The network's input for decoded image bytes (RGBA, as a canvas gives them), prepared as
   * the server prepares the same file or drawing: {x, shown} as prepare() returns.
   * file: an uploaded file (its transparency goes onto the background that shows the ink).
   */
  function prepareRGBA(rgba, w, h, config, { file = false, preprocess = true } = {}) {
    const pre = config.preprocessing || {};
    if (pre.kind === "digits") return prepare(rgbaToGray(rgba, w, h), h, w, config, preprocess);
    return resized(pillowPlanes(rgba, w, h, config.input_size[0]), h, w, config);
  }

  const api = { prepareRGBA, pillowPlanes, resizeF, resize8, mnistStyle, rawDownsample, prepareDigit, prepare, rgbaToGray, roundHalfEven };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else (root.CS = root.CS || {}).preprocess = api;
})(typeof window !== "undefined" ? window : globalThis);
