// The flowforge playground: a page over the JSON API and event stream of flowforge.serve.
"use strict";
const $ = (id) => document.getElementById(id);
const DRAW_BOX = [-4, 4, -4, 4];
let drawn = [], current = null, source = null, families = {};

function message(text) {
  $("message").hidden = !text;
  $("message").textContent = text || "";
}

async function api(path, body) {
  const opts = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function toCanvas(canvas, box, x, y) {
  return [(x - box[0]) / (box[1] - box[0]) * canvas.width,
          canvas.height - (y - box[2]) / (box[3] - box[2]) * canvas.height];
}

function points(canvas, box, pts, color, r) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = color;
  for (const [x, y] of pts) {
    const [u, v] = toCanvas(canvas, box, x, y);
    ctx.fillRect(u - r / 2, v - r / 2, r, r);
  }
}

function viridis(t) {  // a few stops of matplotlib's viridis, linearly interpolated
  const s = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  t = Math.min(1, Math.max(0, t)) * (s.length - 1);
  const i = Math.min(Math.floor(t), s.length - 2), f = t - i;
  return s[i].map((a, k) => Math.round(a + f * (s[i + 1][k] - a)));
}

function drawDensity(canvas, dens) {
  const ctx = canvas.getContext("2d"), n = dens.n, vals = dens.values;
  const max = Math.max(1e-12, ...vals.flat());
  const img = ctx.createImageData(n, n);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
    const [R, G, B] = viridis(vals[r][c] / max), k = ((n - 1 - r) * n + c) * 4;
    img.data.set([R, G, B, 255], k);
  }
  const tmp = document.createElement("canvas");
  tmp.width = tmp.height = n;
  tmp.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

function drawLoss(canvas, records, entropy) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, m = 40;
  ctx.clearRect(0, 0, W, H);
  const ys = records.flatMap((r) => [r.val]).filter((v) => v !== null && isFinite(v));
  if (entropy !== null) ys.push(entropy);
  if (!records.length || !ys.length) return;
  const lo = Math.min(...ys) - 0.05, hi = Math.max(...ys) + 0.05;
  const smax = Math.max(...records.map((r) => r.step));
  const X = (s) => m + (s / smax) * (W - 1.5 * m), Y = (v) => H - m - (v - lo) / (hi - lo) * (H - 1.5 * m);
  ctx.strokeStyle = "#999"; ctx.strokeRect(m, m / 2, W - 1.5 * m, H - 1.5 * m);
  ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
  ctx.fillText(hi.toFixed(2), 2, m / 2 + 8); ctx.fillText(lo.toFixed(2), 2, H - m);
  ctx.fillText("step " + smax, W - m - 40, H - m + 15);
  if (entropy !== null) {
    ctx.setLineDash([5, 4]); ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.moveTo(m, Y(entropy)); ctx.lineTo(W - m / 2, Y(entropy)); ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#e07b00"; ctx.fillStyle = "#e07b00"; ctx.beginPath();
  records.forEach((r, i) => { if (r.val === null) return; const x = X(r.step), y = Y(r.val);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); ctx.fillRect(x - 2, y - 2, 4, 4); });
  ctx.stroke();
}

function drawLayers(stages) {
  const div = $("layers");
  div.replaceChildren();
  for (const st of stages || []) {
    const fig = document.createElement("figure"), c = document.createElement("canvas");
    c.width = c.height = 220; c.className = "layer";
    const all = st.lines.flat().filter(([x, y]) => isFinite(x) && isFinite(y));
    const q = (k, p) => { const v = all.map((a) => a[k]).sort((a, b) => a - b);
      return v[Math.floor(p * (v.length - 1))]; };
    const box = [q(0, 0.01), q(0, 0.99), q(1, 0.01), q(1, 0.99)];
    const padx = (box[1] - box[0]) * 0.1 + 1e-6, pady = (box[3] - box[2]) * 0.1 + 1e-6;
    const b = [box[0] - padx, box[1] + padx, box[2] - pady, box[3] + pady];
    const ctx = c.getContext("2d"); ctx.strokeStyle = "#555"; ctx.lineWidth = 0.7;
    for (const line of st.lines) {
      ctx.beginPath();
      line.forEach(([x, y], i) => { const [u, v] = toCanvas(c, b, x, y); i ? ctx.lineTo(u, v) : ctx.moveTo(u, v); });
      ctx.stroke();
    }
    const cap = document.createElement("figcaption"); cap.textContent = st.title;
    fig.append(c, cap); div.append(fig);
  }
}

function redrawDrawing() {
  const c = $("draw"); c.getContext("2d").clearRect(0, 0, c.width, c.height);
  points(c, DRAW_BOX, drawn, "#1f77b4", 3);
}

function render(v) {
  $("run").textContent = v.run; $("state").textContent = v.state;
  if (v.state === "error" && v.message) message(v.message);
  $("stop").disabled = v.state !== "training" && v.state !== "starting";
  $("resume").disabled = !(v.state === "stopped" || v.state === "finished");
  $("download").hidden = !v.records; $("download").href = `/api/runs/${v.run}/download`;
  const recs = v.records || [], last = recs[recs.length - 1];
  $("step").textContent = last ? last.step : "—";
  $("val-nll").textContent = last && last.val !== null ? last.val.toFixed(4) : "—";
  $("entropy").textContent = v.entropy != null ? v.entropy.toFixed(4) : "—";
  const s = v.summary;
  $("test-nll").textContent = s && s.test_nll != null ? s.test_nll.toFixed(4) : "—";
  $("gap").textContent = s && s.gap != null ? s.gap.toFixed(4) : "—";
  if (v.box) {
    const d = $("density"), sm = $("samples");
    if (v.density) drawDensity(d, v.density);
    sm.getContext("2d").clearRect(0, 0, sm.width, sm.height);
    points(sm, v.box, v.data || [], "#aaa", 2);
    points(sm, v.box, v.samples || [], "#e07b00", 2);
    if (!$("draw-mode").checked) {
      const c = $("draw"); c.getContext("2d").clearRect(0, 0, c.width, c.height);
      points(c, v.box, v.data || [], "#1f77b4", 2);
    }
  }
  if (v.view_error) message("the view could not load the model: " + v.view_error);
  drawLoss($("loss"), recs, v.entropy ?? null);
  if (v.stages) drawLayers(v.stages);
}

function follow(run) {
  if (source) source.close();
  current = run; location.hash = "run=" + run;
  source = new EventSource(`/api/runs/${run}/events`);
  source.onmessage = (e) => render(JSON.parse(e.data));
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) message("lost the server"); };
}

async function train() {
  message("");
  const req = { family: $("family").value, depth: Number($("depth").value), steps: Number($("steps").value) };
  if ($("draw-mode").checked) req.points = drawn; else req.data = $("data").value;
  try { follow((await api("/api/runs", req)).run); } catch (e) { message(e.message); }
}

async function init() {
  const opts = await api("/api/options");
  families = opts.families;
  for (const d of opts.data) $("data").add(new Option(d, d, d === "moons", d === "moons"));
  for (const [k, f] of Object.entries(families)) $("family").add(new Option(f.label, k));
  $("family").onchange = () => { const d = families[$("family").value].depth;
    $("depth").min = d[0]; $("depth").max = d[2]; $("depth").value = d[1]; };
  $("family").onchange();
  $("train").onclick = train;
  $("stop").onclick = () => api(`/api/runs/${current}/stop`, {}).catch((e) => message(e.message));
  $("resume").onclick = () => { message(""); api(`/api/runs/${current}/resume`, { steps: 500 }).catch((e) => message(e.message)); };
  $("clear").onclick = () => { drawn = []; redrawDrawing(); };
  $("draw-mode").onchange = redrawDrawing;
  const c = $("draw"); let down = false;
  const add = (e) => {
    if (!$("draw-mode").checked) return;
    const r = c.getBoundingClientRect();
    const x = DRAW_BOX[0] + (e.clientX - r.left) / r.width * (DRAW_BOX[1] - DRAW_BOX[0]);
    const y = DRAW_BOX[3] - (e.clientY - r.top) / r.height * (DRAW_BOX[3] - DRAW_BOX[2]);
    for (let k = 0; k < 5; k++) drawn.push([x + 0.15 * (Math.random() - 0.5), y + 0.15 * (Math.random() - 0.5)]);
    redrawDrawing();
  };
  c.onmousedown = (e) => { down = true; add(e); };
  c.onmousemove = (e) => { if (down) add(e); };
  window.onmouseup = () => { down = false; };
  const m = location.hash.match(/run=([a-z0-9-]+)/);
  if (m) follow(m[1]);
}
init().catch((e) => message(e.message));
