// The page: the list at "/", one workflow at "/workflows/<id>", the Run dialog. Plain DOM,
// no framework; live by polling the API (the detail view polls a cheap "changes" endpoint).
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("config").dataset.config);
  const main = document.getElementById("main");
  const STATES = ["", "active", "PENDING", "RUNNING", "SUCCESS", "FAILURE", "ERROR", "CANCELLED"];
  let timer = null, generation = 0;

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = config.csrf;
      init.body = JSON.stringify(body);
    }
    // location.origin: a page opened as http://user:pass@host/ cannot fetch relative URLs
    const r = await fetch(location.origin + path, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
    return { ok: r.ok, status: r.status, data };
  }

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]); else e.setAttribute(k, attrs[k]);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  const when = t => (t ? new Date(t * 1000).toLocaleString() : "—");
  const secs = s => (s == null ? "—" : s < 60 ? s.toFixed(2) + " s" : (s / 60).toFixed(1) + " min");
  function bar(counts, total, big) {
    const b = h("div", { class: "bar" + (big ? " big" : "") });
    for (const s of window.DyGraph.ORDER) if (counts[s])
      b.append(h("span", { style: `width:${(100 * counts[s]) / total}%;background:var(--${s})`, title: `${s}: ${counts[s]}` }));
    return b;
  }
  function go(path) { history.pushState(null, "", path); route(); }
  function later(fn, seconds) { const g = generation; timer = setTimeout(() => g === generation && fn(), seconds * 1000); }

  // -- the list ------------------------------------------------------------------------------
  function listView() {
    const q = new URLSearchParams(location.search);
    const state = h("select", { id: "filter-state", onchange: () => apply() },
      ...STATES.map(s => h("option", { value: s }, s || "any state")));
    state.value = q.get("state") || "";
    const name = h("input", { id: "filter-name", placeholder: "name contains", value: q.get("name") || "", oninput: () => apply() });
    const body = h("tbody", { id: "runs" }), more = h("button", { type: "button", id: "more" }, "Older…");
    let before = null, rows = [];
    main.replaceChildren(h("div", { class: "filters" }, state, name, h("span", { id: "list-status", class: "muted" })),
      h("table", {}, h("thead", {}, h("tr", {}, ...["State", "Name", "Id", "Created", "Duration", "Progress"].map(t => h("th", {}, t)))), body), more);
    function apply() {
      const p = new URLSearchParams();
      if (state.value) p.set("state", state.value);
      if (name.value) p.set("name", name.value);
      history.replaceState(null, "", "/" + (p.toString() ? "?" + p : ""));
      before = null; load(false);
    }
    async function load(append) {
      const p = new URLSearchParams({ limit: "100" });
      if (state.value) p.set("state", state.value);
      if (name.value) p.set("name", name.value);
      if (append && before) p.set("before", before);
      const r = await api("GET", "/api/workflows?" + p);
      if (!r.ok) { document.getElementById("list-status").textContent = r.data.error; return; }
      rows = append ? rows.concat(r.data) : r.data;
      if (rows.length) before = rows[rows.length - 1].created_at;
      body.replaceChildren(...rows.map(w => h("tr", { "data-id": w.id, "data-state": w.state },
        h("td", {}, h("span", { class: "badge " + w.state }, w.state)),
        h("td", {}, w.name || "…"),
        h("td", { class: "id" }, h("a", { href: "/workflows/" + w.id, "data-nav": "" }, w.id)),
        h("td", {}, when(w.created_at)),
        h("td", {}, secs(w.duration != null ? w.duration : w.created_at && Date.now() / 1000 - w.created_at)),
        h("td", {}, bar(w.counts, w.progress.total), ` ${w.progress.done}/${w.progress.total}`))));
      document.getElementById("list-status").textContent = `${rows.length} workflows`;
    }
    more.addEventListener("click", () => load(true));
    const tick = async () => { if (!before || rows.length <= 100) await load(false); later(tick, 2 * config.refresh); };
    load(false).then(() => later(tick, 2 * config.refresh));
  }

  // -- one workflow --------------------------------------------------------------------------
  async function detailView(id) {
    main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    const r = await api("GET", "/api/workflows/" + encodeURIComponent(id) + "?view=columns");
    if (!r.ok) { main.replaceChildren(h("p", { class: "message", id: "not-found" }, r.data.error)); return; }
    let wf = r.data, cursor = 0, selected = null;
    const col = wf.columns;
    wf.tasks = col.id.map((nid, i) => ({ id: nid, label: col.label[i], task: col.task[i], state: col.state[i],
      parents: col.parents[i], started_at: col.started_at[i], ended_at: col.ended_at[i], attempts: col.attempts[i] }));
    cursor = wf.cursor; delete wf.columns;
    const model = window.DyGraph.build(wf.tasks);
    const head = h("div", { id: "head" }), progress = h("div", { id: "progress" });
    const message = h("span", { id: "message", class: "message" });
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.id = "graph";
    const canvas = h("canvas", { id: "timeline" }), panel = h("aside", { id: "panel" }, h("p", { class: "muted" }, "Click a node."));
    const act = (label, path, show) => h("button", { type: "button", id: label.split(" ")[0].toLowerCase(), "data-show": show, onclick: () => steer(path, label) }, label);
    const buttons = [act("Cancel", "cancel", "PENDING RUNNING"), act("Retry failed", "retry", "FAILURE ERROR CANCELLED"), act("Relaunch", "relaunch", config.definitions ? "*" : "none")];
    const legend = h("div", { class: "legend" }, ...window.DyGraph.ORDER.map(s => h("span", {}, h("i", { style: `background:var(--${s})` }), s)));
    main.replaceChildren(head, progress, h("div", { class: "actions" }, ...buttons, message),
      h("div", { class: "detail" }, h("div", {}, svg, legend, h("h3", {}, "Timeline"), canvas), panel));

    function paint() {
      head.replaceChildren(h("h2", {}, h("span", { class: "badge " + wf.state, id: "wf-state" }, wf.state), " ", wf.name || "", " ",
        h("code", {}, wf.id)), h("div", { class: "muted" }, `created ${when(wf.created_at)} · duration ${secs(wf.duration != null ? wf.duration : Date.now() / 1000 - wf.created_at)}`));
      progress.replaceChildren(bar(wf.counts, wf.progress.total, true),
        h("span", { id: "progress-text" }, `${wf.progress.done} of ${wf.progress.total} nodes done`));
      for (const b of buttons) b.hidden = !(b.dataset.show === "*" || b.dataset.show.split(" ").includes(wf.state));
      window.DyGraph.render(svg, model, showNode, selected);
      legend.dataset.coarse = model.coarse ? "1" : "";
      if (model.coarse && !legend.querySelector(".coarse")) legend.append(h("span", { class: "coarse muted" }, "(big graph: one box per task)"));
      window.DyTimeline.draw(canvas, model, wf.created_at, wf.ended_at || Date.now() / 1000);
    }
    async function showNode(i) {
      selected = model.tasks[i].id; paint();
      const n = await api("GET", `/api/workflows/${encodeURIComponent(wf.id)}/nodes/${encodeURIComponent(selected)}`);
      if (!n.ok) { panel.replaceChildren(h("p", { class: "message" }, n.data.error)); return; }
      const d = n.data, rows = [["id", d.id], ["task", d.key], ["label", d.label], ["state", d.state], ["started", when(d.started_at)],
        ["ended", when(d.ended_at)], ["took", d.ended_at && d.started_at ? secs(d.ended_at - d.started_at) : "—"], ["attempts", String(d.attempts)],
        ["args", JSON.stringify(d.args)], ["kwargs", JSON.stringify(d.kwargs)]];
      panel.replaceChildren(h("h3", {}, d.label), h("dl", {}, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        d.error ? h("div", { id: "node-error" }, h("h4", {}, `${d.error.type}: ${d.error.message}`), h("pre", { id: "traceback" }, d.error.traceback || "(no traceback)")) : null,
        d.result != null ? h("div", {}, h("h4", {}, "Result"), h("pre", { id: "result" }, typeof d.result === "string" ? d.result : JSON.stringify(d.result, null, 1))) : null,
        d.flower ? h("a", { href: d.flower, target: "_blank", rel: "noopener" }, "Open in Flower") : null);
    }
    async function steer(path, label) {
      message.className = "message"; message.textContent = `${label}…`;
      const s = await api("POST", `/api/workflows/${encodeURIComponent(wf.id)}/${path}`, {});
      if (!s.ok) { message.textContent = s.data.error; return; }
      message.className = "message ok"; message.textContent = `${label}: done`;
      if (path === "relaunch") go("/workflows/" + s.data.id); else poll(true);
    }
    async function poll(once) {
      const c = await api("GET", `/api/workflows/${encodeURIComponent(wf.id)}/changes?since=${cursor}`);
      if (c.ok) {
        for (const [i, state, at] of c.data.events) {
          const t = model.tasks[i];
          if (!t) continue;
          t.state = state;
          if (state === "LAUNCHED") { t.started_at = at; t.ended_at = null; t.attempts++; }
          else if (state === "RUNNING" && !t.started_at) t.started_at = at;
          else if (state === "WAITING") t.started_at = t.ended_at = null;
          else if (!["READY"].includes(state)) t.ended_at = at;
        }
        const changed = c.data.events.length || c.data.state !== wf.state;
        const mine = selected && c.data.events.some(([i]) => model.tasks[i] && model.tasks[i].id === selected);
        cursor = c.data.next; Object.assign(wf, c.data, { tasks: wf.tasks, name: wf.name });
        if (changed || ["PENDING", "RUNNING"].includes(wf.state)) paint();
        if (mine) showNode(model.tasks.findIndex(t => t.id === selected));  // its panel too
      }
      if (!once) later(poll, ["PENDING", "RUNNING"].includes(wf.state) ? config.refresh : 4 * config.refresh);
    }
    paint();
    poll(false);
  }

  // -- the Run dialog ------------------------------------------------------------------------
  const dialog = document.getElementById("run-dialog"), errors = document.getElementById("run-errors");
  document.getElementById("run-open").addEventListener("click", async () => {
    errors.replaceChildren();
    const r = await api("GET", "/api/definitions"), select = document.getElementById("run-name");
    const none = !r.ok || !r.data.length;
    document.getElementById("run-none").hidden = !none;
    document.getElementById("run-submit").disabled = none;
    if (r.ok) select.replaceChildren(...r.data.map(d => h("option", { value: d.fullname }, d.fullname)));
    dialog.showModal();
  });
  document.getElementById("run-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("run-form").addEventListener("submit", async e => {
    e.preventDefault();
    let payload;
    try { payload = JSON.parse(document.getElementById("run-payload").value || "{}"); }
    catch (x) { errors.replaceChildren(h("li", {}, "payload: not JSON (" + x.message + ")")); return; }
    const r = await api("POST", "/api/workflows", { name: document.getElementById("run-name").value, payload });
    if (!r.ok) { errors.replaceChildren(...(r.data.errors || [r.data.error]).map(m => h("li", {}, m))); return; }
    dialog.close(); go("/workflows/" + r.data.id);
  });

  // -- routing -------------------------------------------------------------------------------
  document.getElementById("search").addEventListener("submit", e => {
    e.preventDefault();
    const id = document.getElementById("search-id").value.trim();
    if (id) go("/workflows/" + encodeURIComponent(id));
  });
  document.addEventListener("click", e => {
    const a = e.target.closest("a[data-nav]");
    if (a && !e.ctrlKey && !e.metaKey) { e.preventDefault(); go(a.getAttribute("href")); }
  });
  function route() {
    clearTimeout(timer); generation++;
    const m = location.pathname.match(/^\/workflows\/([^/]+)$/);
    if (m) detailView(decodeURIComponent(m[1])); else listView();
  }
  window.addEventListener("popstate", route);
  route();
})();
