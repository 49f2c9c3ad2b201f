// The timeline: one row per group of the graph, one bar per node from its launch to its
// end (or now), coloured by state, on a canvas (cheap for 10,000 bars).
"use strict";
(function () {
  const ROW = 16, LABEL = 170, MAX_ROWS = 60;

  function color(state) {
    return getComputedStyle(document.documentElement).getPropertyValue("--" + state).trim() || "#999";
  }

  function draw(canvas, model, t0, now) {
    const groups = model.groups.slice().sort((a, b) => a.col - b.col || a.id - b.id).slice(0, MAX_ROWS);
    const width = canvas.clientWidth || 800, height = groups.length * ROW + 22;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = width * dpr; canvas.height = height * dpr; canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, width, height);
    let t1 = t0;
    for (const t of model.tasks) t1 = Math.max(t1, t.ended_at || (t.started_at ? now : t0));
    const span = Math.max(t1 - t0, 0.001), x = t => LABEL + ((t - t0) / span) * (width - LABEL - 8);
    ctx.font = "11px system-ui, sans-serif";
    const colors = {};
    groups.forEach((g, r) => {
      const y = r * ROW + 4;
      ctx.fillStyle = "#333";
      ctx.fillText(g.label.slice(0, 24) + (g.members.length > 1 ? ` ×${g.members.length}` : ""), 4, y + 11);
      const lanes = Math.min(g.members.length, ROW - 4);
      g.members.forEach((i, k) => {
        const t = model.tasks[i];
        if (!t.started_at) return;
        const c = colors[t.state] || (colors[t.state] = color(t.state));
        const a = x(t.started_at), b = x(t.ended_at || now);
        ctx.fillStyle = c;
        ctx.fillRect(a, y + (k % lanes) * ((ROW - 4) / lanes), Math.max(b - a, 1), Math.max((ROW - 4) / lanes, 1));
      });
    });
    ctx.fillStyle = "#777";
    const axis = groups.length * ROW + 16;
    ctx.fillText("0 s", LABEL, axis);
    const total = span.toFixed(span < 10 ? 2 : 0) + " s";
    ctx.fillText(total, width - 8 - ctx.measureText(total).width, axis);
    if (model.groups.length > MAX_ROWS) ctx.fillText(`(first ${MAX_ROWS} of ${model.groups.length} rows)`, LABEL + 60, axis);
  }

  window.DyTimeline = { draw };
})();
