// The server's rules on requests, for an engine that answers in the browser (engine_ort.js):
// the size limits the model description sends ("limits"), the texts of refusals
// (web/decode.py, convscope.limits) and of warnings (web/trust.py), word for word.
// tests/parity holds them to the server's own texts under Node (module.exports).
"use strict";

(function (root) {
  const f32 = Math.fround;
  const fail = (message) => { throw new Error(message); };

  // Python's f"{v:.0%}": the double v*100 rounded half to even
  function percent(v) {
    const x = v * 100, f = Math.floor(x), d = x - f;
    return `${d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f}%`;
  }
  // Python's f"{v:g}": six significant digits, trailing zeros dropped
  function formatG(v) {
    if (v === 0) return Object.is(v, -0) ? "-0" : "0";
    const [mant, e] = v.toExponential(5).split("e");
    const exp = Number(e);
    const strip = (t) => (t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t);
    if (exp < -4 || exp >= 6) return `${strip(mant)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
    return strip(v.toFixed(Math.max(0, 5 - exp)));
  }
  // Python's json.dumps for what a JSON body can hold
  function pyJSON(v) {
    if (Array.isArray(v)) return `[${v.map(pyJSON).join(", ")}]`;
    if (v && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${pyJSON(k)}: ${pyJSON(x)}`).join(", ")}}`;
    if (typeof v === "string") return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    return JSON.stringify(v);
  }

  function checkSides(h, w, limits) {
    const lo = limits.min_side, hi = limits.max_side;
    if (Math.min(h, w) < lo || Math.max(h, w) > hi) fail(`the image is ${h}x${w}; send one from ${lo}x${lo} to ${hi}x${hi} pixels (scale it first)`);
  }
  // convscope.limits.check_image_size: one pixel limit for every decoder
  function checkPixels(w, h, limits) {
    const most = limits.max_image_pixels;
    if (w < 1 || h < 1) fail(`the image is ${w}x${h} pixels: an image needs at least one pixel`);
    if (most && w * h > most) {
      const side = Math.round(Math.sqrt(most));
      fail(`the image is ${w}x${h} = ${(w * h / 1e6).toFixed(1)} megapixels; convscope reads images of at most ` +
        `${(most / 1e6).toFixed(1)} megapixels (${most.toLocaleString("en-US")} pixels, e.g. ${side}x${side}): scale it down first`);
    }
  }
  // a decoded image's size, as decode.decode_image checks it: drawings (png) both sides, files their pixels
  function checkDecoded(w, h, limits, { file = false } = {}) {
    if (!file && Math.max(w, h) > limits.max_side) checkSides(h, w, limits);
    checkPixels(w, h, limits);
    if (!file && Math.min(w, h) < limits.min_side) checkSides(h, w, limits);
  }

  // decode.read_request: the "preprocess" flag and the one image (or sample) sent
  function requestKind(request) {
    const preprocess = request.preprocess !== undefined ? request.preprocess : true;
    if (typeof preprocess !== "boolean") fail(`"preprocess" must be true or false, got ${pyJSON(preprocess).slice(0, 40)}`);
    const kinds = ["image", "png", "file", "sample"].filter((k) => request[k] !== undefined);
    if (kinds.length !== 1) {
      fail('send exactly one of "image" (a 2-D list of floats in [0, 1]), "png" (a data:image/png;base64,... URL), ' +
        '"file" (a data:image/...;base64,... URL) or "sample" (an index from GET /api/samples)');
    }
    if (kinds[0] === "sample" && !Number.isInteger(request.sample)) fail('"sample" must be the index of a sample (GET /api/samples lists them)');
    return { kind: kinds[0], preprocess: kinds[0] === "sample" ? false : preprocess };
  }

  // decode.image_from_png / image_from_file, up to the bytes: the data URL's shape
  function checkURL(key, value) {
    const PNG = "data:image/png;base64,";
    if (typeof value !== "string") {
      const t = value === null ? "NoneType" : Array.isArray(value) ? "list" : typeof value === "object" ? "dict"
        : typeof value === "boolean" ? "bool" : Number.isInteger(value) ? "int" : "float";
      fail(key === "png" ? `"png" must be a string "${PNG}...", got ${t}` : `"file" must be a string "data:image/...;base64,...", got ${t}`);
    }
    if (key === "png" && !value.startsWith(PNG)) fail(`"png" must be a PNG data URL starting with "${PNG}"`);
    const comma = value.indexOf(",");
    if (key === "file" && (comma < 0 || !value.startsWith("data:") || !value.slice(0, comma).endsWith(";base64"))) {
      fail('"file" must be a data URL like "data:image/jpeg;base64,..."');
    }
    const body = value.slice(comma + 1);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) fail(`"${key}" is not valid base64 after its data URL prefix`);
  }

  // decode.image_from_list: a 2-D list of numbers in [0, 1] -> {gray, h, w}, the same checks in the same order
  function fromList(rows, limits) {
    if (!Array.isArray(rows) || !rows.length || !Array.isArray(rows[0])) fail('"image" must be a non-empty 2-D list of rows, like [[0, 0.5], [1, 0]]');
    const h = rows.length, w = rows[0].length;
    checkSides(h, w, limits);
    const depth = (v) => (Array.isArray(v) ? 1 + (v.length ? depth(v[0]) : 0) : 0);
    const d = depth(rows);
    if (rows.some((row) => !Array.isArray(row) || row.length !== w || row.some((v) => depth(v) !== d - 2))) {
      fail('"image" rows must all have the same length and hold only numbers');
    }
    if (d !== 2) fail(`"image" must be 2-D (rows of numbers), got ${d} dimension(s)`);
    const flat = rows.flat();
    const numeric = flat.every((v) => typeof v === "number" || typeof v === "boolean") && flat.some((v) => typeof v === "number");
    if (!numeric) fail('"image" must hold only numbers in [0, 1] (no strings, nulls or booleans)');
    const gray = new Float64Array(h * w);
    let lo = Infinity, hi = -Infinity;
    flat.forEach((v, i) => { gray[i] = f32(Number(v)); lo = Math.min(lo, gray[i]); hi = Math.max(hi, gray[i]); });
    if (!flat.every((v) => Number.isFinite(Number(v)))) fail('"image" holds NaN or infinity; send numbers in [0, 1]');
    if (lo < 0 || hi > 1) fail(`"image" values must lie in [0, 1] (0 = black, 1 = white ink); got values from ${formatG(lo)} to ${formatG(hi)}`);
    return { gray, h, w };
  }

  // web/trust.py tiny_or_flat: a dot or a flat stroke, seen in the raw drawing (h, w) before centring
  function tinyOrFlat(raw, H, W) {
    let peak = 0;
    for (const v of raw) if (v > peak) peak = v;
    if (peak <= 0) return null;
    const t = f32(f32(0.3) * f32(peak));  // NumPy: float32 array * Python float stays float32
    let r0 = H, r1 = -1, c0 = W, c1 = -1;
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      if (raw[y * W + x] > t) { r0 = Math.min(r0, y); r1 = Math.max(r1, y); c0 = Math.min(c0, x); c1 = Math.max(c1, x); }
    }
    const h = r1 - r0 + 1, w = c1 - c0 + 1, side = Math.max(H, W);
    if (Math.max(h, w) <= 0.12 * side) {
      return `the drawing is tiny (${h}x${w} of ${H}x${W} pixels): centring blows a dot up into a blob, and the network's answer to a blob means little`;
    }
    if (h <= 0.15 * w) return "a flat stroke is not a digit MNIST has (its widest digits are still taller than this)";
    return null;
  }

  // web/trust.py warnings: shown (the fed image in [0, 1]), raw (H*W, or null), the answer's probabilities
  function warnings({ randomWeights, preprocessing, inputSize }, shown, probs, order, raw) {
    const out = [];
    const p1 = probs[order[0]], p2 = order.length > 1 ? probs[order[1]] : 0;
    if (randomWeights) out.push("the network has random weights: its answers mean nothing");
    const pre = preprocessing || {};
    if (pre.kind === "digits") {
      let n = 0;
      for (const v of shown) if (pre.invert !== true ? v > f32(0.3) : v < f32(0.7)) n++;
      const ink = n / shown.length;
      const odd = raw ? tinyOrFlat(raw, inputSize[1], inputSize[2]) : null;
      if (ink === 0) out.push("the image is blank: there is nothing to recognise");
      else if (ink < 0.04) out.push(`very little ink (${percent(ink)} of the pixels; MNIST digits cover 10-25%): a dot or a thin stroke is not a digit, whatever the network says`);
      else if (odd) out.push(odd);
      else if (ink > 0.45) out.push(`a lot of ink (${percent(ink)} of the pixels; MNIST digits cover 10-25%): this does not look like one digit`);
    }
    if (order.length > 1 && p1 - p2 < 0.2) out.push(`the first two guesses are close (${percent(p1)} and ${percent(p2)})`);
    return out;
  }

  const api = { percent, formatG, pyJSON, checkSides, checkPixels, checkDecoded, requestKind, checkURL, fromList, tinyOrFlat, warnings };
  (root.CS = root.CS || {}).rules = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof window !== "undefined" ? window : globalThis);
