// The workflow graph: nodes grouped (siblings of one task under the same parents, and runs
// of one task in a chain, form one group), groups laid out in columns by longest path, drawn
// in SVG. A group bigger than EXPAND_LIMIT is one box with its state counts until clicked.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLLAPSE_OVER = 6, SHOW_MAX = 200, MAX_GROUPS = 500, W = 170, H = 26, DX = 220, DY = 34;
  const ORDER = ["SUCCEEDED", "RUNNING", "LAUNCHED", "READY", "WAITING", "FAILED",
    "UPSTREAM_FAILED", "SKIPPED", "CANCELLED"];

  // Group the nodes: tasks[i] = {label, parents, state}. Returns {groups, groupOf, coarse}.
  // A graph that still has more than MAX_GROUPS groups (long chains of varied tasks) is
  // grouped by label alone (coarse): one box per task, in order of first appearance.
  function build(tasks, coarse) {
    const n = tasks.length, indeg = new Int32Array(n), children = Array.from({ length: n }, () => []);
    tasks.forEach((t, i) => t.parents.forEach(p => { children[p].push(i); indeg[i]++; }));
    const order = [], queue = [];
    for (let i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
    while (queue.length) {
      const i = queue.shift(); order.push(i);
      for (const c of children[i]) if (--indeg[c] === 0) queue.push(c);
    }
    const groupOf = new Int32Array(n), groups = [], byKey = new Map();
    for (const i of order) {
      const t = tasks[i];
      let g;
      if (t.parents.length === 1) {
        const pg = groups[groupOf[t.parents[0]]];
        if (pg.label === t.label && children[t.parents[0]].length === 1 && pg.chain) g = pg;
      }
      if (!g) {
        const pgs = [...new Set(t.parents.map(p => groupOf[p]))].sort((a, b) => a - b);
        const key = coarse ? t.label : t.label + "|" + pgs.join(",");
        g = byKey.get(key);
        if (!g) {
          g = { id: groups.length, label: t.label, members: [], parents: pgs, chain: true };
          groups.push(g); byKey.set(key, g);
        } else g.chain = false;
      }
      g.members.push(i); groupOf[i] = g.id;
      if (coarse) for (const p of t.parents) if (groupOf[p] < g.id && !g.parents.includes(groupOf[p])) g.parents.push(groupOf[p]);
    }
    if (!coarse && groups.length > MAX_GROUPS) return build(tasks, true);
    // columns: longest path over the group DAG (a group comes after its parents' groups)
    for (const g of groups) {
      g.col = 0;
      for (const p of g.parents) if (p < g.id) g.col = Math.max(g.col, groups[p].col + 1);
      g.open = g.members.length <= COLLAPSE_OVER;
    }
    return { tasks, groups, groupOf, coarse: !!coarse };
  }

  function counts(model, g) {
    const c = {};
    for (const i of g.members) { const s = model.tasks[i].state; c[s] = (c[s] || 0) + 1; }
    return c;
  }

  // Items to draw: an open group's members (up to SHOW_MAX, then a "more" box), or the group.
  function items(model) {
    const cols = [], itemOf = new Map();
    const put = (col, item) => { (cols[col] = cols[col] || []).push(item); };
    for (const g of model.groups) {
      if (g.open) {
        const shown = g.members.slice(0, SHOW_MAX);
        shown.forEach(i => { const it = { kind: "node", i, g }; put(g.col, it); itemOf.set(i, it); });
        if (g.members.length > SHOW_MAX) {
          const more = { kind: "more", g, n: g.members.length - SHOW_MAX };
          put(g.col, more);
          g.members.slice(SHOW_MAX).forEach(i => itemOf.set(i, more));
        }
      } else {
        const box = { kind: "group", g };
        put(g.col, box); g.members.forEach(i => itemOf.set(i, box));
      }
    }
    let y = 0;
    cols.forEach((col, c) => {
      (col || []).forEach((it, r) => { it.x = c * DX + 10; it.y = r * DY + 10; });
      y = Math.max(y, (col || []).length);
    });
    const edges = new Set(), list = [];
    itemOf.forEach((it, i) => {
      for (const p of model.tasks[i].parents) {
        const from = itemOf.get(p);
        if (!from || from === it) continue;
        const key = from.x + "," + from.y + ">" + it.x + "," + it.y;
        if (!edges.has(key)) { edges.add(key); list.push([from, it]); }
      }
    });
    return { cols, edges: list, width: cols.length * DX + 20, height: y * DY + 20 };
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function cut(s, k) { return s.length > k ? s.slice(0, k - 1) + "…" : s; }

  // Draw into svg; onNode(i) when a node is clicked; keeps pan/zoom across redraws.
  function render(svg, model, onNode, selected) {
    const view = svg._view || (svg._view = { x: 0, y: 0, k: 1 });
    svg.textContent = "";
    const root = el("g", { transform: `translate(${view.x},${view.y}) scale(${view.k})` }, svg);
    const laid = items(model);
    svg.style.height = Math.min(Math.max(laid.height + 20, 160), window.innerHeight * 0.6) + "px";
    for (const [a, b] of laid.edges) {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      el("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }, root);
    }
    laid.cols.forEach(col => (col || []).forEach(it => {
      const g = el("g", { class: "item", transform: `translate(${it.x},${it.y})` }, root);
      if (it.kind === "node") {
        const t = model.tasks[it.i];
        g.setAttribute("data-node", t.id);
        g.setAttribute("data-state", t.state);
        if (t.id === selected) g.classList.add("selected");
        el("rect", { class: "box", width: W, height: H, rx: 4, fill: `var(--${t.state})` }, g);
        el("text", { x: 6, y: 17 }, g).textContent = cut(t.label, 26);
        el("title", {}, g).textContent = `${t.label}\n${t.id}\n${t.state}`;
        g.addEventListener("click", () => onNode(it.i));
      } else {
        const c = counts(model, it.g), total = it.g.members.length;
        g.setAttribute("data-group", it.g.id);
        el("rect", { class: "box", width: W, height: H, rx: 4, fill: "#fff" }, g);
        let x = 0;
        for (const s of ORDER) if (c[s]) {
          const w = (W * c[s]) / total;
          el("rect", { x, y: H - 7, width: w, height: 7, fill: `var(--${s})` }, g); x += w;
        }
        const what = it.kind === "more" ? `+${it.n} more (collapse)` : `${cut(it.g.label, 18)} ×${total}`;
        el("text", { x: 6, y: 14 }, g).textContent = what;
        el("title", {}, g).textContent = Object.entries(c).map(([s, k]) => `${s}: ${k}`).join("\n");
        g.addEventListener("click", () => { it.g.open = !it.g.open; render(svg, model, onNode, selected); });
      }
    }));
    if (!svg._panning) pan(svg, model);
    return laid;
  }

  function pan(svg) {
    svg._panning = true;
    let drag = null;
    const apply = () => {
      const v = svg._view, g = svg.firstChild;
      if (g) g.setAttribute("transform", `translate(${v.x},${v.y}) scale(${v.k})`);
    };
    svg.addEventListener("mousedown", e => { drag = [e.clientX, e.clientY, svg._view.x, svg._view.y]; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", e => {
      if (!drag) return;
      svg._view.x = drag[2] + e.clientX - drag[0]; svg._view.y = drag[3] + e.clientY - drag[1]; apply();
    });
    svg.addEventListener("wheel", e => {
      e.preventDefault();
      const v = svg._view, f = e.deltaY < 0 ? 1.15 : 1 / 1.15, r = svg.getBoundingClientRect();
      const px = e.clientX - r.left, py = e.clientY - r.top;
      v.x = px - (px - v.x) * f; v.y = py - (py - v.y) * f; v.k *= f; apply();
    }, { passive: false });
  }

  window.DyGraph = { build, render, counts, ORDER };
})();
