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
    const parts = l.name.split(".");
    const short_ = ["conv", "bn", "act", "add", "concat"].includes(parts.at(-1)) && parts.length > 1 ? parts.slice(-2).join(".") : parts.at(-1);
    b.append(CS.el("span", { class: "gname", text: short_ }), CS.el("span", { class: "gkind", text: label }),
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
    const layersIn = (t) => t.items.flatMap((it) => (it.layer ? [it.layer] : layersIn(it.scope)));

    // A block whose own join (concat / add) reads two or more branches made inside it: each
    // branch is the chain of its layers, walked back from the join's input; they sit side by side.
    function branchesOf(t) {
      const joins = t.items.filter((it) => it.layer && (it.layer.kind === "concat" || it.layer.kind === "add") && it.layer.inputs.length >= 2);
      if (!joins.length) return null;
      const join = joins.reduce((a, b) => (b.layer.inputs.length > a.layer.inputs.length ? b : a)).layer;
      const inside = new Set(layersIn(t).map((l) => l.name));
      const owner = {};
      const branches = join.inputs.map((start, k) => {
        const seen = new Set();
        const stack = inside.has(start) ? [start] : [];
        while (stack.length) {
          const n = stack.pop();
          if (seen.has(n) || n === join.name) continue;
          seen.add(n);
          for (const i of byName[n].inputs) if (inside.has(i)) stack.push(i);
        }
        for (const n of seen) owner[n] = owner[n] === undefined ? k : -1;  // -1: shared by branches
        return { start, seen };
      });
      if (branches.filter((b) => b.seen.size).length < 2 && join.kind === "concat") return null;
      return { join, branches, owner };
    }

    function renderBranches(t, info, depth) {
      const box = CS.el("div", { class: "gitems" });
      const cols = info.branches.map((b, k) => {
        const col = CS.el("div", { class: "gbranch", "data-branch": String(k) },
          CS.el("div", { class: "gbranch-head", text: b.seen.size ? `branch ${k + 1}` : `shortcut: ${b.start}` }));
        return col;
      });
      const row = CS.el("div", { class: "gbranches", "data-join": info.join.name }, ...cols);
      let placed = false;
      for (const l of layersIn(t)) {
        const k = info.owner[l.name];
        if (k !== undefined && k >= 0) { cols[k].append(node(l, byName)); if (!placed) { box.append(row); placed = true; } continue; }
        if (l === info.join && !placed) { box.append(row); placed = true; }
        box.append(node(l, byName));
      }
      return box;
    }

    const render = (t, depth) => {
      const info = depth > 0 ? branchesOf(t) : null;
      if (info) return renderBranches(t, info, depth);
      const box = CS.el("div", { class: "gitems" });
      for (const it of t.items) {
        if (it.layer) { box.append(node(it.layer, byName)); continue; }
        const sub = CS.el("details", { class: "gscope", "data-scope": it.scope.path });
        if (openAll || depth < 1) sub.open = true;
        sub.append(CS.el("summary", { text: it.scope.path.split(".").at(-1) }), render(it.scope, depth + 1));
        box.append(sub);
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
