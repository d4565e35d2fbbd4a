// The network as a graph: an outline of the module tree (stages -> blocks -> layers), the
// output shape on every edge, additions and concatenations as nodes of their own, parallel
// branches side by side, params / MACs / receptive field on each node. Click: its activations.
"use strict";

(function () {
  const CS = window.CS;
  const graph = (CS.graph = {});
  const short = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n));

  function groupOf(l) {
    if (l.kind === "input") return "";
    if (l.module) return l.module.split(".").slice(0, -1).join(".");
    return l.scope || "";
  }

  function node(l, byName) {
    const edges = l.inputs.map((i) => `${i} ${byName[i].shape.join("×")}`).join(", ");
    const rf = l.whole_input ? "all" : `${l.rf[0]}×${l.rf[1]}`;
    const b = CS.el("button", { type: "button", class: `gnode kind-${l.kind}`, "data-testid": `graph-node-${l.name}`,
      title: `${l.name}: ${CS.net.geometryText(l)}` });
    const label = l.kind === "add" ? "＋ add" : l.kind === "concat" ? "⧉ concat" : l.kind + (l.activation ? `+${l.activation}` : "");
    b.append(CS.el("span", { class: "gname", text: l.name.split(".").at(-1) }), CS.el("span", { class: "gkind", text: label }),
      CS.el("span", { class: "gshape", text: l.shape.join("×") }),
      CS.el("span", { class: "gcost", text: `${short(l.params || 0)}p · ${l.macs == null ? "?" : short(l.macs)} MACs · RF ${rf}` }));
    if (edges) b.prepend(CS.el("span", { class: "gedge", text: `← ${edges}` }));
    b.addEventListener("click", () => graph.select(l.name));
    return b;
  }

  graph.build = function (model, root) {
    if (!root) return;
    const byName = Object.fromEntries(model.layers.map((l) => [l.name, l]));
    const tree = { path: "", items: [], kids: {} };
    const scopeNode = (path) => {
      let t = tree;
      if (!path) return t;
      const parts = path.split(".");
      for (let i = 0; i < parts.length; i++) {
        const p = parts.slice(0, i + 1).join(".");
        if (!t.kids[p]) { t.kids[p] = { path: p, items: [], kids: {} }; t.items.push({ scope: t.kids[p] }); }
        t = t.kids[p];
      }
      return t;
    };
    for (const l of model.layers) scopeNode(groupOf(l)).items.push({ layer: l });
    const openAll = model.layers.length <= 80;
    const render = (t, depth) => {
      const joins = t.items.some((it) => it.layer && (it.layer.kind === "concat" || it.layer.kind === "add"));
      const scopes = t.items.filter((it) => it.scope).length;
      const box = CS.el("div", { class: "gitems" });
      let row = null;
      for (const it of t.items) {
        if (it.layer) { row = null; box.append(node(it.layer, byName)); continue; }
        const sub = CS.el("details", { class: "gscope", "data-scope": it.scope.path });
        if (openAll || depth < 1) sub.open = true;
        sub.append(CS.el("summary", { text: it.scope.path.split(".").at(-1) }), render(it.scope, depth + 1));
        // branches that meet in an addition or a concatenation sit side by side
        if (joins && scopes >= 2) {
          if (!row) { row = CS.el("div", { class: "gbranches" }); box.append(row); }
          row.append(sub);
        } else { row = null; box.append(sub); }
      }
      return box;
    };
    root.replaceChildren(render(tree, 0));
  };

  graph.select = async function (name) {
    const view = CS.net.views[name];
    document.querySelectorAll(".gnode.selected").forEach((n) => n.classList.remove("selected"));
    const g = document.querySelector(`[data-testid="graph-node-${CSS.escape(name)}"]`);
    if (g) g.classList.add("selected");
    if (!view) return;
    view.section.hidden = false;
    const box = document.querySelector(`[data-testid="layer-toggle-${CSS.escape(name)}"]`);
    if (box) box.checked = true;
    view.section.scrollIntoView({ block: "start" });
    await CS.net.ensure(name);
  };
})();
