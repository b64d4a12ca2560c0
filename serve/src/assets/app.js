// clorch serve: the dashboard page. Plain JavaScript, no libraries, no network but the
// dashboard's own read-only API; polls once a second and redraws what changed.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const POLL_MS = 1000;
const TABLE_EVERY_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
// 10 colours × 3 dash patterns: 30 series stay apart.
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const DASHES = ["", "6 3", "2 2"];

const state = {
  experiments: [],
  index: 0,
  view: null,
  version: -1,
  tableVersion: -1,
  tableAt: 0,
  run: null,
  runVersion: -1,
  runSort: { key: null, dir: 1 },
  tableSort: { key: null, dir: 1 },
  filter: "",
};

async function api(path) {
  const headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  const type = response.headers.get("content-type") || "";
  return type.startsWith("application/json") ? response.json() : response.text();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function fmt(v, digits = 3) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

// ---- charts -------------------------------------------------------------------------------

// series: [{label, x: [], y: [], half: [] | null}]; draws lines with 95% bands.
function chart(series, opts) {
  const W = 520, H = 260, L = 52, R = 12, T = 10, B = 34;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  let points = 0;
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
  for (const s of series) {
    s.x.forEach((x, i) => {
      const y = s.y[i];
      if (y === null || !Number.isFinite(y)) return;
      const h = s.half && s.half[i] ? s.half[i] : 0;
      xmin = Math.min(xmin, x); xmax = Math.max(xmax, x);
      ymin = Math.min(ymin, y - h); ymax = Math.max(ymax, y + h);
      points++;
    });
  }
  // For tests and for the curious: how many points are drawn and how far the curves reach.
  svg.dataset.points = points;
  svg.dataset.xmax = Number.isFinite(xmax) ? xmax : 0;
  if (points === 0) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" });
    t.textContent = "no data yet";
    svg.append(t);
    return wrap(svg, series, opts);
  }
  // Accuracies and fractions live in [0, 1]: so does the axis, and bands are cut at its ends
  // (with two seeds a 95% band is wider than the whole range).
  if (opts && opts.unit) { ymin = 0; ymax = 1; }
  if (xmax === xmin) { xmax = xmin + 1; }
  if (ymax === ymin) { ymax = ymin + 1; }
  const sx = x => L + (x - xmin) / (xmax - xmin) * (W - L - R);
  const sy = y => T + (1 - (Math.min(Math.max(y, ymin), ymax) - ymin) / (ymax - ymin)) * (H - T - B);
  // Axes and ticks.
  svg.append(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.append(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (let k = 0; k <= 4; k++) {
    const y = ymin + (ymax - ymin) * k / 4;
    const ty = svgEl("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end", class: "tick" });
    ty.textContent = Math.abs(ymax - ymin) < 10 ? y.toFixed(2) : y.toFixed(0);
    svg.append(ty, svgEl("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
  }
  // x ticks: whole numbers (tasks, examples), at most five.
  const step = Math.max(1, Math.ceil((xmax - xmin) / 4));
  for (let x = Math.ceil(xmin); x <= xmax; x += step) {
    const tx = svgEl("text", { x: sx(x), y: H - B + 14, "text-anchor": "middle", class: "tick" });
    tx.textContent = Math.abs(x) >= 100000 ? x.toExponential(1) : String(x);
    svg.append(tx);
  }
  if (opts && opts.xlabel) {
    const t = svgEl("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "label" });
    t.textContent = opts.xlabel;
    svg.append(t);
  }
  series.forEach((s, n) => {
    const colour = COLOURS[n % COLOURS.length], dash = DASHES[Math.floor(n / COLOURS.length) % DASHES.length];
    const ok = s.x.map((x, i) => s.y[i] !== null && Number.isFinite(s.y[i]));
    if (s.half) {
      const upper = [], lower = [];
      s.x.forEach((x, i) => {
        if (!ok[i] || !s.half[i]) return;
        upper.push(`${sx(x)},${sy(s.y[i] + s.half[i])}`);
        lower.unshift(`${sx(x)},${sy(s.y[i] - s.half[i])}`);
      });
      if (upper.length > 1) svg.append(svgEl("polygon", { points: upper.concat(lower).join(" "), fill: colour, class: "band" }));
    }
    const d = s.x.map((x, i) => ok[i] ? `${sx(x)},${sy(s.y[i])}` : null).filter(p => p).join(" ");
    if (d.includes(" ")) {
      svg.append(svgEl("polyline", { points: d, stroke: colour, "stroke-dasharray": dash, class: "line" }));
    } else if (d) {
      const [cx, cy] = d.split(",");
      svg.append(svgEl("circle", { cx, cy, r: 3, fill: colour }));
    }
  });
  return wrap(svg, series, opts);
}

function wrap(svg, series, opts) {
  const figure = el("figure", { class: "chart-figure" }, el("figcaption", {}, opts ? opts.title : ""), svg);
  if (series.length > 1 || (series[0] && series[0].label)) {
    const legend = el("ul", { class: "legend" });
    series.forEach((s, n) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = COLOURS[n % COLOURS.length];
      if (Math.floor(n / COLOURS.length) % DASHES.length) swatch.classList.add("dashed");
      legend.append(el("li", { title: s.label }, swatch, s.label));
    });
    figure.append(legend);
  }
  return figure;
}

function bandSeries(groups, pick) {
  return groups.map(g => {
    const b = pick(g);
    return { label: groupLabel(g), x: b.x, y: b.mean, half: b.half };
  });
}

function groupLabel(g) {
  return [g.stream, g.method, g.grid].filter(s => s).join(" · ") + ` (${g.runs.length})`;
}

// ---- tables -------------------------------------------------------------------------------

function sortable(table, columns, rows, sort, onSort, cellOf) {
  table.replaceChildren();
  const head = el("tr");
  columns.forEach(c => {
    const th = el("th", { scope: "col", "data-key": c.key, "aria-sort": sort.key === c.key ? (sort.dir > 0 ? "ascending" : "descending") : "none" }, c.label);
    th.addEventListener("click", () => {
      sort.dir = sort.key === c.key ? -sort.dir : 1;
      sort.key = c.key;
      onSort();
    });
    head.append(th);
  });
  table.append(el("thead", {}, head));
  const sorted = rows.slice();
  if (sort.key !== null) {
    const col = columns.find(c => c.key === sort.key);
    sorted.sort((a, b) => compare(col.value(a), col.value(b)) * sort.dir);
  }
  const body = el("tbody");
  sorted.forEach(r => body.append(cellOf(r)));
  table.append(body);
}

function compare(a, b) {
  const na = typeof a === "number" ? a : parseFloat(a), nb = typeof b === "number" ? b : parseFloat(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  if (Number.isFinite(na)) return -1;
  if (Number.isFinite(nb)) return 1;
  return String(a).localeCompare(String(b));
}

const RUN_COLUMNS = [
  { key: "id", label: "run", value: r => r.id },
  { key: "stream", label: "stream", value: r => r.stream },
  { key: "method", label: "method", value: r => r.method },
  { key: "grid", label: "grid", value: r => r.grid },
  { key: "seed", label: "seed", value: r => r.seed },
  { key: "status", label: "status", value: r => r.status },
  { key: "attempts", label: "attempts", value: r => r.attempts },
  { key: "task", label: "task", value: r => r.tasks ? r.task / r.tasks : 0 },
  { key: "eta", label: "ETA", value: r => r.eta_seconds ?? Infinity },
  { key: "checkpoint", label: "checkpoint", value: r => r.checkpoint_age_seconds ?? Infinity },
  { key: "last", label: "last online", value: r => r.last_online ?? NaN },
  { key: "reason", label: "reason", value: r => r.reason || "" },
];

function renderRuns() {
  const view = state.view;
  const needle = state.filter.toLowerCase();
  const rows = view.runs.filter(r => !needle || [r.id, r.stream, r.method, r.grid, r.status, "seed " + r.seed, r.reason || ""].join(" ").toLowerCase().includes(needle));
  sortable(document.getElementById("runs"), RUN_COLUMNS, rows, state.runSort, renderRuns, r => {
    const tr = el("tr", { class: "status-" + r.status, "data-run": r.id },
      el("td", {}, el("a", { href: "#run=" + r.id }, r.id)),
      el("td", {}, r.stream), el("td", {}, r.method), el("td", {}, r.grid || "–"), el("td", { class: "num" }, r.seed),
      el("td", {}, el("span", { class: "status" }, r.status)), el("td", { class: "num" }, r.attempts),
      el("td", { class: "num" }, `${r.task}/${r.tasks}`), el("td", { class: "num" }, duration(r.eta_seconds)),
      el("td", { class: "num" }, r.checkpoint_age_seconds === null ? "–" : duration(r.checkpoint_age_seconds) + " ago"),
      el("td", { class: "num" }, fmt(r.last_online)), el("td", { class: "reason" }, r.reason || ""));
    return tr;
  });
}

function renderSummary() {
  const v = state.view;
  const counts = Object.entries(v.counts).map(([k, n]) => el("span", { class: "count status-" + k }, `${n} ${k}`));
  const summary = document.getElementById("summary");
  summary.replaceChildren(el("h2", {}, v.name), el("p", { class: "dir" }, v.dir), el("p", {}, ...counts));
  if (v.problem) summary.append(el("p", { class: "problem" }, v.problem));
  document.getElementById("recipe").textContent = v.recipe || "";
  document.title = `clorch · ${v.name}`;
}

function renderGroups() {
  const v = state.view, measure = v.measure, unit = measure === "accuracy";
  const box = document.getElementById("groups");
  box.replaceChildren(
    chart(bandSeries(v.groups, g => g.online), { title: `online ${measure}`, xlabel: "examples", unit }),
    chart(bandSeries(v.groups, g => g.just_trained), { title: `${measure} on each task right after training it`, xlabel: "task", unit }),
    chart(bandSeries(v.groups, g => g.average), { title: `average ${measure} over the tasks so far, after each task`, xlabel: "task", unit }),
    chart(bandSeries(v.groups, g => g.dead), { title: "dead units (mean over layers)", xlabel: "tasks trained", unit: true }),
    chart(bandSeries(v.groups, g => g.effective_rank), { title: "effective rank (mean over layers)", xlabel: "tasks trained" }),
  );
}

async function renderTable(force) {
  const now = Date.now();
  if (!force && (state.tableVersion === state.version || now - state.tableAt < TABLE_EVERY_MS)) return;
  state.tableAt = now;
  const t = await api(`/api/experiments/${state.index}/table`);
  state.tableVersion = t.version;
  state.tableData = t;
  drawTable();
}

function drawTable() {
  const t = state.tableData;
  if (!t) return;
  const columns = t.header.map((label, i) => ({ key: i, label, value: r => r[i].text }));
  sortable(document.getElementById("table"), columns, t.rows, state.tableSort, drawTable, r =>
    el("tr", {}, ...r.map(c => el("td", c.best ? { class: "best" } : {}, c.text))));
  document.getElementById("table-notes").replaceChildren(...t.notes.map(n => el("p", {}, n)));
}

// ---- one run ------------------------------------------------------------------------------

async function renderRun(force) {
  const id = state.run;
  const detail = document.getElementById("run-detail");
  if (!id) { detail.hidden = true; return; }
  if (!force && state.runVersion === state.version) return;
  const r = await api(`/api/experiments/${state.index}/runs/${id}`);
  state.runVersion = r.version;
  detail.hidden = false;
  document.getElementById("run-id").textContent = `${id} · ${r.row.method} ${r.row.grid} · seed ${r.row.seed} · ${r.row.status}`;
  detail.querySelectorAll(".measure").forEach(s => { s.textContent = r.measure; });
  document.getElementById("run-online").replaceChildren(
    chart([{ label: "", x: r.online.x, y: r.online.mean, half: null }], { title: "", xlabel: "examples", unit: r.measure === "accuracy" }));
  document.getElementById("run-matrix").replaceChildren(matrix(r));
  const p = r.plasticity;
  document.getElementById("run-plasticity").replaceChildren(
    chart([
      { label: "dead", x: p.map(q => q.after_tasks), y: p.map(q => q.dead), half: null },
      { label: "dormant", x: p.map(q => q.after_tasks), y: p.map(q => q.dormant), half: null },
    ], { title: "", xlabel: "tasks trained", unit: true }),
    chart([{ label: "effective rank", x: p.map(q => q.after_tasks), y: p.map(q => q.effective_rank), half: null }], { title: "", xlabel: "tasks trained" }));
  const log = await api(`/api/experiments/${state.index}/runs/${id}/log`);
  document.getElementById("run-log").textContent = log;
}

function matrix(r) {
  const table = el("table", { class: "matrix" });
  const tasks = r.matrix.length ? r.matrix[0].length : 0;
  const head = el("tr", {}, el("th", {}, ""));
  for (let j = 0; j < tasks; j++) head.append(el("th", {}, j));
  table.append(head);
  r.matrix.forEach((row, i) => {
    const label = r.matrix_untrained ? (i === 0 ? "untrained" : i - 1) : i;
    const tr = el("tr", {}, el("th", {}, label));
    row.forEach(v => {
      const td = el("td", { class: v === null ? "empty" : "" }, v === null ? "" : fmt(v, 2));
      if (v !== null && r.measure === "accuracy") td.style.background = `hsl(${Math.round(v * 120)}, 60%, ${88 - v * 20}%)`;
      tr.append(td);
    });
    table.append(tr);
  });
  return table;
}

// ---- polling ------------------------------------------------------------------------------

function renderExperiments() {
  const nav = document.getElementById("experiments");
  nav.replaceChildren(...state.experiments.map(e => {
    const a = el("a", { href: "#experiment=" + e.index, class: e.index === state.index ? "current" : "" }, e.name);
    return a;
  }));
}

function readHash() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const index = parseInt(hash.get("experiment") ?? state.index, 10);
  if (Number.isInteger(index) && index !== state.index) {
    state.index = index; state.version = -1; state.tableVersion = -1; state.tableData = null; state.run = null;
  }
  state.run = hash.get("run") || null;
  state.runVersion = -1;
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const v = await api(`/api/experiments/${state.index}?since=${state.version}`);
    if (!v.unchanged) {
      state.view = v;
      state.version = v.version;
      renderSummary();
      renderRuns();
      renderGroups();
    }
    await renderTable(false);
    await renderRun(false);
    live.classList.remove("stale");
    live.title = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    live.classList.add("stale");
    live.title = String(e);
  }
  setTimeout(poll, POLL_MS);
}

async function start() {
  readHash();
  window.addEventListener("hashchange", async () => {
    readHash();
    state.version = -1;
    renderExperiments();
    try { await renderRun(true); } catch (e) { /* shown by the next poll */ }
  });
  document.getElementById("filter").addEventListener("input", e => { state.filter = e.target.value; if (state.view) renderRuns(); });
  document.getElementById("run-close").addEventListener("click", () => { location.hash = "experiment=" + state.index; });
  state.experiments = await api("/api/experiments");
  renderExperiments();
  poll();
}

start();
