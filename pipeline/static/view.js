// ssdnet live view: renders /api/stream (server-sent events) into one card per camera. No dependencies.
"use strict";
const state = { line: "", node: {}, cameras: {} };
const STAGES = ["transport", "queue", "fit", "score", "publish", "end_to_end"];
let source = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const fmt = (v, d = 3) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "-");

function setStatus(text) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = "status " + text;
}

function historySvg(cam) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "history");
  svg.setAttribute("viewBox", "0 0 300 60");
  svg.setAttribute("preserveAspectRatio", "none");
  const pts = cam.history;
  const thr = cam.result ? cam.result.threshold : null;
  if (!pts.length) return svg;
  const values = pts.map((p) => p[1]).concat(thr === null ? [] : [thr]);
  const lo = Math.min(...values), hi = Math.max(...values);
  const y = (v) => 56 - ((v - lo) / (hi - lo || 1)) * 52;
  const x = (i) => (pts.length === 1 ? 150 : (i / (pts.length - 1)) * 296 + 2);
  if (thr !== null) {
    const t = document.createElementNS(ns, "line");
    t.setAttribute("class", "threshold");
    for (const [k, v] of [["x1", 0], ["x2", 300], ["y1", y(thr)], ["y2", y(thr)]]) t.setAttribute(k, v);
    svg.append(t);
  }
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.map((p, i) => `${x(i).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
  svg.append(line);
  pts.forEach((p, i) => {
    if (!p[2]) return;
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", x(i)); c.setAttribute("cy", y(p[1])); c.setAttribute("r", 2.5);
    svg.append(c);
  });
  return svg;
}

function eventItem(ev) {
  const regions = (ev.regions || []).slice(0, 3).map((r) => `[${r.bbox.join(",")}]`).join(" ");
  const more = (ev.regions || []).length > 3 ? " ..." : "";
  return el("li", { "data-log-seq": ev.log_seq ?? "", "data-seq": ev.seq },
    `${clock(ev.t_capture)} #${ev.seq} ${ev.product ? `(${ev.product}) ` : ""}`,
    el("span", { class: "score" }, `score ${fmt(ev.score)}`),
    ` ${(ev.regions || []).length} region(s) ${regions}${more}`);
}

function renderCamera(cam) {
  const id = "cam-" + cam.name;
  let card = document.getElementById(id);
  const fresh = !card;
  if (fresh) {
    card = el("section", { class: "camera", id: id, "data-camera": cam.name });
    const cards = document.getElementById("cameras");
    const after = [...cards.querySelectorAll("section.camera")].find((c) => c.dataset.camera > cam.name);
    cards.insertBefore(card, after || null);
    document.getElementById("empty")?.remove();
  }
  const r = cam.result;
  const status = cam.camera || {};
  const head = el("h2", {}, el("span", {}, cam.name),
    el("span", { class: "small" }, `${status.state === "paced" ? "waiting for the node" : status.state || ""}` +
      (status.state !== "ended" && status.state !== "paced" && status.last_frame_age !== undefined && status.last_frame_age !== null
        ? `, last frame ${fmt(status.last_frame_age, 1)} s ago` : "")));
  const img = el("img", { class: "overlay", alt: `latest overlay of ${cam.name}` });
  const old = card.querySelector("img.overlay");
  if (r) {
    const src = `api/frame/${encodeURIComponent(cam.name)}?v=${cam.frame_version}`;
    if (old && old.dataset.version === String(cam.frame_version)) {
      img.src = old.src; // unchanged: no new request
    } else {
      img.src = src;
    }
    img.dataset.version = String(cam.frame_version);
    img.dataset.seq = String(r.seq);
  }
  const verdict = r ? el("div", {},
    el("span", { class: "verdict " + r.label }, r.label === "anomalous" ? "ANOMALY" : "OK"),
    ` #${r.seq}  score ${fmt(r.score)} ${r.label === "anomalous" ? ">" : "<="} threshold ${fmt(r.threshold)}`,
    el("span", { class: "small" }, `  ${r.regions.length} region(s), model v${r.model_version}` +
      (r.product ? `, product ${r.product}` : "")))
    : el("div", { class: "small" }, "no result yet");
  const lat = el("table", { class: "latency" },
    el("tr", {}, ...STAGES.map((s) => el("th", {}, s.replaceAll("_", " ")))),
    el("tr", {}, ...STAGES.map((s) => el("td", { "data-stage": s }, fmt(cam.latency_ms[s], 0)))));
  const counters = { ...cam.counters, ...((status.counters) || {}) };
  const names = Object.keys(counters).filter((k) => !k.startsWith("credit"));
  const cnt = el("div", { class: "counters" }, ...names.map((k) =>
    el("span", { "data-counter": k }, `${k.replaceAll("_", " ")} `, el("b", {}, String(counters[k])))));
  const events = el("ul", { class: "events" }, ...cam.events.map(eventItem));
  card.classList.toggle("anomalous", !!r && r.label === "anomalous");
  card.replaceChildren(head, img, verdict, historySvg(cam), el("div", { class: "small" }, "latency ms (p50)"),
    lat, cnt, el("div", { class: "small" }, `latest events (${cam.counters.events})`), events);
}

function renderNode() {
  document.getElementById("line").textContent = state.line || "";
  const n = state.node || {};
  const c = n.counters || {};
  const keys = ["received", "scored", "conflated", "lost", "rejected", "failed", "events", "bad_messages"];
  document.getElementById("node").textContent = n.name
    ? `node ${n.name}: ${n.state} | ` + keys.filter((k) => k in c).map((k) => `${k} ${c[k]}`).join("  ")
    : "";
}

function onSnapshot(data) {
  state.line = data.line; state.node = data.node || {}; state.cameras = data.cameras || {};
  for (const card of document.querySelectorAll("section.camera")) {
    if (!(card.dataset.camera in state.cameras)) card.remove();
  }
  Object.values(state.cameras).forEach(renderCamera);
  renderNode();
}

function onEvent(ev) {
  const cam = state.cameras[ev.source];
  if (!cam) return;
  const seen = cam.events.some((e) => e.seq === ev.seq && e.log_seq === ev.log_seq);
  if (!seen) {
    cam.events.unshift(ev);
    cam.counters.events += 1;
    renderCamera(cam);
  }
}

function onNode(data) {
  if (data.node) { state.node = data.node; renderNode(); }
  if (data.camera && state.cameras[data.camera]) {
    state.cameras[data.camera].camera = data.status;
    renderCamera(state.cameras[data.camera]);
  }
}

function connect() {
  if (source) source.close();
  setStatus("connecting");
  source = new EventSource("api/stream");
  source.onopen = () => setStatus("live");
  source.onerror = () => {
    setStatus("reconnecting");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000); // refused: try again later
  };
  source.addEventListener("snapshot", (e) => { setStatus("live"); onSnapshot(JSON.parse(e.data)); });
  source.addEventListener("camera", (e) => {
    const cam = JSON.parse(e.data);
    state.cameras[cam.name] = cam;
    renderCamera(cam);
  });
  source.addEventListener("event", (e) => onEvent(JSON.parse(e.data)));
  source.addEventListener("node", (e) => onNode(JSON.parse(e.data)));
}

if (location.search.includes("token=")) history.replaceState(null, "", location.pathname); // the cookie has it now
connect();
