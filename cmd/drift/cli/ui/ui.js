// drift ui's page: renders the state drift ui sends (first inline, then
// over /api/stream), animates jobs that change node, and sends the
// actions (drop a job on a node, kill, block, drain, unblock) as POSTs.
"use strict";
(function () {
  const HOUR = 3600;
  let history = {};      // node name: [{t, load, mem}], oldest first
  let pending = null;    // a state that came while a job was dragged
  let dragging = false;
  const nodeEls = new Map(); // node name: card element
  const jobEls = new Map();  // job id: card element

  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function bytes(n) {
    const u = "KMGTPE";
    if (n < 1024) return n + "B";
    let v = n / 1024, i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + u[i];
  }
  function age(since) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
    return Math.floor(s / 3600) + "h" + Math.floor(s % 3600 / 60) + "m";
  }
  function hhmmss(t) { return new Date(t).toLocaleTimeString([], { hour12: false }); }

  // status shows what an action did.
  function status(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.className = bad ? "bad" : "";
  }
  async function post(path, body) {
    status("…");
    try {
      const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const res = await r.json().catch(() => ({ error: r.statusText }));
      status(res.error || res.message, !!res.error);
    } catch (e) {
      status("drift ui did not answer: " + e, true);
    }
  }

  // chart draws samples of one field as an SVG line over the last hour.
  function chart(cls, samples, field, max) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart " + cls);
    svg.setAttribute("viewBox", "0 0 360 34");
    svg.setAttribute("preserveAspectRatio", "none");
    const now = Date.now() / 1000;
    const pts = samples.map((p) => {
      const x = 360 - (now - p.t) / 10;
      const y = 33 - Math.min(1, p[field] / max) * 32;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
    if (pts.length) { // the newest point, seen even before the line is long
      const [x, y] = pts[pts.length - 1].split(",");
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", x);
      dot.setAttribute("cy", y);
      dot.setAttribute("r", "2.5");
      svg.append(dot);
    }
    return svg;
  }

  function nodeCard(name) {
    let card = nodeEls.get(name);
    if (card) return card;
    card = el("div", { class: "node", "data-node": name,
      ondragover: (e) => { e.preventDefault(); card.classList.add("over"); },
      ondragleave: () => card.classList.remove("over"),
      ondrop: (e) => {
        e.preventDefault();
        card.classList.remove("over");
        const id = e.dataTransfer.getData("text/plain");
        const job = jobEls.get(id);
        if (!id || (job && job.dataset.on === name)) return;
        status("moving " + id + " to " + name + "…");
        post("api/migrate", { job: id, to: name });
      } });
    card.head = el("h3");
    card.facts = el("div", { class: "facts" });
    card.charts = el("div");
    card.actions = el("div", { class: "actions" },
      el("button", { onclick: () => post("api/mode", { node: name, mode: "block" }), title: "take no new jobs or migrations" }, "block"),
      el("button", { onclick: () => post("api/mode", { node: name, mode: "drain" }), title: "move every job away, and block" }, "drain"),
      el("button", { onclick: () => post("api/mode", { node: name, mode: "unblock" }) }, "unblock"));
    card.jobs = el("div", { class: "jobs" });
    card.append(card.head, card.facts, card.charts, card.actions, card.jobs);
    nodeEls.set(name, card);
    return card;
  }

  function renderNode(n) {
    const card = nodeCard(n.name);
    const state = n.state !== "alive" ? n.state : n.draining ? "draining" : n.blocked ? "blocked" : "alive";
    card.className = "node " + n.state;
    card.head.replaceChildren(n.name + (n.self ? "*" : ""),
      el("span", { class: "badge role" }, n.role || "worker"),
      el("span", { class: "badge " + state }, state));
    const used = n.mem_total > 0 ? n.mem_total - n.mem_free : 0;
    card.facts.textContent = `${n.addr} · ${n.cpus} CPU × ${(n.speed || 0).toFixed(2)} · load ${n.load1.toFixed(2)} · mem ${bytes(used)}/${bytes(n.mem_total)}`;
    const h = history[n.name] || [];
    const maxLoad = Math.max(1, ...h.map((p) => p.load));
    card.charts.replaceChildren(
      el("div", { class: "chartlabel" }, el("span", {}, "load per core, last hour"), el("span", {}, "max " + maxLoad.toFixed(2))),
      chart("load", h, "load", maxLoad),
      el("div", { class: "chartlabel" }, el("span", {}, "memory in use"), el("span", {}, n.mem_total ? Math.round(100 * used / n.mem_total) + "%" : "")),
      chart("mem", h, "mem", 1));
    return card;
  }

  function jobCard(j) {
    let c = jobEls.get(j.id);
    if (!c) {
      c = el("div", { class: "job", draggable: "true", "data-job": j.id,
        ondragstart: (e) => { dragging = true; e.dataTransfer.setData("text/plain", j.id); e.dataTransfer.effectAllowed = "move"; },
        ondragend: () => { dragging = false; if (pending) { const p = pending; pending = null; apply(p); } } });
      c.label = el("span", { class: "what" });
      c.append(el("span", { class: "id" }, j.id), c.label,
        el("button", { class: "kill", title: "send TERM", onclick: () => {
          if (confirm("kill " + j.id + " (" + j.name + ")?")) post("api/kill", { job: j.id });
        } }, "kill"));
      jobEls.set(j.id, c);
    }
    c.classList.toggle("migrating", j.state === "migrating");
    c.label.textContent = `${j.name} · ${j.state} · ${Math.round(j.cpu)}% · ${bytes(j.rss)} · ${age(j.started)}` + (j.moves ? ` · ${j.moves} move${j.moves > 1 ? "s" : ""}` : "");
    c.title = (j.argv || []).join(" ") + (j.last_move ? "\nlast move: " + j.last_move : "");
    return c;
  }

  // place puts a job's card in the list of the node it runs on; when it
  // changed node, the card slides from where it was (FLIP).
  function place(card, list, node) {
    if (card.parentNode === list) return;
    const was = card.parentNode ? card.getBoundingClientRect() : null;
    const moved = card.dataset.on && card.dataset.on !== node;
    list.append(card);
    card.dataset.on = node;
    if (!was || !moved) return;
    const now = card.getBoundingClientRect();
    card.classList.remove("moving");
    card.style.transform = `translate(${was.left - now.left}px, ${was.top - now.top}px)`;
    card.getBoundingClientRect(); // start from there
    card.classList.add("moving", "moved");
    card.style.transform = "";
    setTimeout(() => card.classList.remove("moving", "moved"), 2500);
  }

  function describe(e) {
    const f = e.fields || {};
    const s = (k) => f[k] == null ? "" : f[k];
    const secs = (k) => f[k] == null ? "" : Number(f[k]).toFixed(2) + "s";
    switch (e.kind) {
      case "join": return s("member") + " joined";
      case "suspect": return s("member") + " stopped answering";
      case "death": return s("member") + " is dead";
      case "migration":
        return `${s("job")} ${e.node} → ${s("to")} ${s("result")}` +
          (f.freeze_seconds != null ? ` frozen ${secs("freeze_seconds")} total ${secs("total_seconds")}` : "") +
          (f.error ? ": " + f.error : "");
      case "decision": return `balancer: ${s("job")} → ${s("to")}: ${s("reason")}`;
      case "refusal": return `${s("job")} → ${s("to")} refused: ${s("refusal") || s("error")}`;
      case "netboot": return `${s("mac")} reached ${s("stage")}`;
      case "storage": return "/cluster " + (f.healthy ? "healthy" : f.mounted ? "unhealthy" : "not mounted") + (f.source ? " from " + f.source : "") + (f.error ? ": " + f.error : "");
    }
    return Object.entries(f).map(([k, v]) => k + "=" + v).join(" ");
  }

  function renderEvents(events) {
    const items = events.slice().reverse().map((e) =>
      el("li", { class: e.kind }, el("span", { class: "t" }, hhmmss(e.time)), " ", e.node, " ",
        el("span", { class: "k" }, e.kind), " ", describe(e)));
    if (!items.length) items.push(el("li", { class: "empty" }, "no events yet"));
    $("events").replaceChildren(...items);
  }

  function renderStorage(st) {
    if (st.storage_error) { $("storage").replaceChildren(el("p", { class: "error" }, st.storage_error)); return; }
    const rows = (st.storage || []).map((s) => {
      const m = s.mount || {};
      const health = s.error ? el("span", { class: "bad" }, s.error)
        : m.healthy ? el("span", { class: "ok" }, "healthy")
        : el("span", { class: "bad" }, m.mounted ? "unhealthy" + (m.error ? ": " + m.error : "") : "not mounted" + (m.error ? ": " + m.error : ""));
      return el("tr", {}, el("td", {}, s.node), el("td", {}, health), el("td", {}, m.source || ""),
        el("td", {}, m.total ? bytes(m.free) + " free of " + bytes(m.total) : ""));
    });
    if (!rows.length) { $("storage").replaceChildren(el("p", { class: "empty" }, "not known yet")); return; }
    $("storage").replaceChildren(el("table", {}, el("tr", {}, el("th", {}, "node"), el("th", {}, "/cluster"), el("th", {}, "from"), el("th", {}, "space")), ...rows));
  }

  function renderNetboot(st) {
    const nb = st.netboot;
    if (!nb) { $("netboot").replaceChildren(el("p", { class: "empty" }, st.netboot_error || "not known yet")); return; }
    const head = el("p", {}, `${nb.mode} on ${nb.interface || "?"} ${nb.addr || ""}` + (nb.error ? " — " : ""), nb.error ? el("span", { class: "bad" }, nb.error) : null);
    const rows = (nb.machines || []).map((m) =>
      el("tr", {}, el("td", {}, m.mac), el("td", {}, m.node), el("td", {}, m.arch), el("td", {}, el("b", {}, m.stage)), el("td", {}, hhmmss(m.at))));
    $("netboot").replaceChildren(head, rows.length
      ? el("table", {}, el("tr", {}, el("th", {}, "MAC"), el("th", {}, "node"), el("th", {}, "arch"), el("th", {}, "stage"), el("th", {}, "at")), ...rows)
      : el("p", { class: "empty" }, "no machine has network-booted yet"));
  }

  function apply(st) {
    if (dragging) { pending = st; return; }
    const nodes = st.nodes || [], jobs = (st.jobs || []).filter((j) => j.state !== "exited");
    const alive = nodes.filter((n) => n.state === "alive").length;
    $("summary").textContent = `${nodes.length} nodes, ${alive} alive · ${jobs.length} job${jobs.length === 1 ? "" : "s"} · asking ${st.cluster}`;
    const err = st.error || (st.missing || []).map((m) => m.node + " did not answer: " + m.error).join("; ");
    $("error").hidden = !err;
    $("error").textContent = err;

    const list = $("nodes");
    const seen = new Set();
    for (const n of nodes) {
      const card = renderNode(n);
      if (card.parentNode !== list) list.append(card);
      seen.add(n.name);
    }
    for (const [name, card] of nodeEls) if (!seen.has(name)) { card.remove(); nodeEls.delete(name); }

    const live = new Set();
    let unplaced = 0;
    for (const j of jobs) {
      live.add(j.id);
      const card = jobCard(j);
      const node = nodeEls.get(j.node);
      if (node) place(card, node.jobs, j.node);
      else { place(card, $("unplaced-jobs"), j.node); unplaced++; }
    }
    for (const [id, card] of jobEls) if (!live.has(id)) { card.remove(); jobEls.delete(id); }
    $("unplaced").hidden = unplaced === 0;
    for (const card of nodeEls.values()) {
      const empty = card.jobs.querySelector(".empty");
      const hasJobs = card.jobs.querySelector(".job");
      if (!hasJobs && !empty) card.jobs.append(el("div", { class: "empty" }, "no jobs"));
      if (hasJobs && empty) empty.remove();
    }
    renderEvents(st.events || []);
    renderStorage(st);
    renderNetboot(st);
  }

  function addSamples(pts) {
    const old = Date.now() / 1000 - HOUR;
    for (const [name, p] of Object.entries(pts)) {
      const h = (history[name] = history[name] || []);
      h.push(p);
      while (h.length && h[0].t < old) h.shift();
    }
  }

  const first = window.driftState;
  if (first) { history = first.history || {}; apply(first); }

  function connect() {
    const es = new EventSource("api/stream");
    es.addEventListener("state", (e) => {
      const st = JSON.parse(e.data);
      if (st.history) history = st.history;
      $("live").textContent = "live " + hhmmss(st.time);
      $("live").className = "live";
      apply(st);
    });
    es.addEventListener("sample", (e) => addSamples(JSON.parse(e.data)));
    es.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "live down"; };
  }
  window.addEventListener("load", () => setTimeout(connect, 0));
})();
