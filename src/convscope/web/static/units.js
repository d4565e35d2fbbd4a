// What a unit sees: click a channel's map to see the dataset patches that drive it hardest
// (Zeiler & Fergus) and the image made to drive it (feature visualisation, Olah et al.).
// The server computes a layer once per run (progress shown while it does) and caches it
// beside the run. Requests go through CS.engine.units (engine.js); a model without a run,
// or an engine without units (the static site), has nothing to rank, and the view stays off.
"use strict";

(function () {
  const CS = (window.CS = window.CS || {});
  const POLL_MS = 500;
  let layers = null;     // {name: {channels, receptive_field}} once known; {} when unavailable
  let wanted = null;     // the channel shown now: a newer click cancels the older poll

  const el = (tag, attrs = {}, ...kids) => {
    if (CS.el) return CS.el(tag, attrs, ...kids);
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    e.append(...kids);
    return e;
  };

  function panel() {
    let p = document.getElementById("units-panel");
    if (p) return p;
    p = el("aside", { id: "units-panel", class: "units-panel", "data-testid": "units-panel", hidden: "" });
    Object.assign(p.style, { position: "fixed", right: "12px", bottom: "12px", maxWidth: "360px", zIndex: 50,
      background: "#fff", border: "1px solid #bbb", borderRadius: "6px", padding: "8px 10px",
      boxShadow: "0 2px 10px rgba(0,0,0,.2)", font: "13px system-ui, sans-serif" });
    document.body.append(p);
    return p;
  }

  function show(...kids) {
    const p = panel();
    const close = el("button", { type: "button", "data-testid": "units-close", "aria-label": "close", text: "×" });
    close.style.float = "right";
    close.addEventListener("click", () => { p.hidden = true; wanted = null; });
    p.replaceChildren(close, ...kids);
    p.hidden = false;
  }

  function img(src, testid, title, px) {
    const i = el("img", { src, alt: title, title, "data-testid": testid });
    Object.assign(i.style, { width: `${px}px`, height: `${px}px`, imageRendering: "pixelated", margin: "1px" });
    return i;
  }

  function render(d) {
    const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
    const patches = el("div", { "data-testid": "units-patches" },
      ...d.top.map((t, i) => img(t.png, `units-patch-${i}`,
        `image ${t.index}, unit (${t.y}, ${t.x}): ${fmt(t.activation)}`, 52)));
    const ratio = d.ratio === null ? "" : ` (${d.ratio.toFixed(2)}x the best patch)`;
    show(el("strong", { text: `${d.layer} channel ${d.channel}` }),
      el("div", { text: `what it sees (receptive field ${d.receptive_field} px): the top ${d.top.length} dataset patches` }),
      patches,
      el("div", { text: `and the image made to drive it: ${fmt(d.optimized_activation)}${ratio}` }),
      img(d.optimized_png, "units-optimized", "optimised, cropped to the field", 104),
      img(d.optimized_full_png, "units-optimized-full", "optimised, the whole input", 104));
  }

  function progress(layer, channel, p) {
    const bar = el("progress", { max: "1", value: String(p.progress || 0), "data-testid": "units-progress" });
    bar.style.width = "100%";
    show(el("strong", { text: `${layer} channel ${channel}` }),
      el("div", { "data-testid": "units-status",
        text: `computing what the units of ${layer} see, once for this run: ${p.stage || ""}` }), bar);
  }

  async function open(layer, channel) {
    const key = `${layer}/${channel}`;
    wanted = key;
    try {
      for (;;) {
        const { status, body } = await CS.engine.units(layer, channel);
        if (wanted !== key) return;
        if (status === 200) return render(body);
        progress(layer, channel, body);
        await new Promise((r) => setTimeout(r, POLL_MS));
        if (wanted !== key) return;
      }
    } catch (err) {
      if (wanted === key) show(el("div", { "data-testid": "units-error", text: String(err.message || err) }));
    }
  }

  async function known() {
    if (layers) return layers;
    layers = {};
    try {
      const { body } = await CS.engine.unitLayers();
      for (const l of body.layers || []) layers[l.name] = l;
    } catch (_) { /* no run loaded: no units view */ }
    return layers;
  }

  // A click on a feature map: its section names the layer, the canvas its channel.
  document.addEventListener("click", async (ev) => {
    const canvas = ev.target.closest && ev.target.closest("canvas.map");
    const section = canvas && canvas.closest("section[data-name]");
    if (!section || canvas.dataset.map === undefined || !CS.engine || !CS.engine.units) return;
    const name = section.dataset.name;
    if (!(name in (await known()))) return;
    open(name, Number(canvas.dataset.map));
  });

  // a new model (the Train tab swapped a run in: app.js's "cs:model") has other layers and units
  document.addEventListener("cs:model", () => { layers = null; wanted = null; const p = document.getElementById("units-panel"); if (p) p.hidden = true; });

  CS.units = { open };
})();
