// The one door to the network: every request the page makes goes through here.
// Server mode talks to the explorer's /api routes; an in-browser engine (ONNX Runtime Web)
// can replace window.CS.engine with the same functions.
"use strict";

(function () {
  const CS = (window.CS = window.CS || {});

  async function call(url, options) {
    const res = await fetch(url, options);
    let body;
    try { body = await res.json(); } catch (_) { throw new Error(`${res.status} ${res.statusText}`); }
    if (!res.ok) throw new Error(body.detail || res.statusText);
    return body;
  }
  const query = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null)).toString();

  CS.engine = CS.engine || {
    kind: "server",
    health: () => call("/api/health"),
    // {model, classes, input_size, normalization, preprocessing, layers: [{name, kind, shape, inputs, ...}], kernels}
    model: () => call("/api/model"),
    // request: {png | file | image | sample, preprocess} -> {probabilities, top, input, layers, input_id, warnings}
    predict: (request) => call("/api/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) }),
    // one layer's maps for an input: {offset, limit, sort: "index" | "strength", input}
    layer: (name, opts = {}) => call(`/api/layer?${query({ name, ...opts })}`),
    weights: (name, unit) => call(`/api/weights?${query({ name, unit })}`),
    samples: (opts = {}) => call(`/api/samples?${query(opts)}`),
    // Grad-CAM of the first (rank 0) or second (rank 1) guess: {label, layer, shape: [H, W], data: base64 uint8}
    gradcam: (opts = {}) => call(`/api/gradcam?${query(opts)}`),
  };
})();
