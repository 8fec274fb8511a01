// The flowforge playground: a page over the JSON API and event stream of flowforge.serve.
"use strict";
const $ = (id) => document.getElementById(id);
const DRAW_BOX = [-4, 4, -4, 4];
const FILE = "__file__";  // the data menu's entry for the user's file
let drawn = [], current = null, source = null, families = {}, maxFileBytes = 0;
let file = null;  // the user's file: {source, name, rows, points, box, entropy}

function message(text) {
  $("message").hidden = !text;
  $("message").textContent = text || "";
}

async function api(path, body) {
  const opts = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  return answer(await fetch(path, opts));
}

async function answer(r) {
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

function clear(canvas) { canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height); }

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

function ticks(lo, hi, n) {  // at most n round values in [lo, hi] (at least n / 2.5), and
  // the decimals that print them
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return [out, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))];
}

function drawLoss(canvas, records, entropy) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  const L = 52, R = 12, T = 12, B = 40;  // margins: the axes' labels live there
  ctx.clearRect(0, 0, W, H);
  const vals = (k) => records.filter((r) => r[k] !== null && isFinite(r[k]));
  const val = vals("val"), tr = vals("train");
  const smax = Math.max(10, ...records.map((r) => r.step));
  // the scale holds every value, unless the first tenth of the steps would squash the rest
  // to a third of the height: then it holds the later ones and the first sit on the top edge
  // as open marks
  const ys = [...val.map((r) => [r.step, r.val]), ...tr.map((r) => [r.step, r.train])];
  const late = ys.filter(([s]) => s >= smax / 10).map(([, y]) => y);
  let scale = ys.map(([, y]) => y);
  const floor = Math.min(...scale, ...(entropy !== null ? [entropy] : []));
  if (late.length && Math.max(...scale) - floor > 3 * (Math.max(...late) - floor)) scale = late;
  if (entropy !== null) scale.push(entropy);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#999"; ctx.font = "12px sans-serif";
  ctx.strokeRect(L, T, W - L - R, H - T - B);
  ctx.textAlign = "center"; ctx.fillText("step", L + (W - L - R) / 2, H - 6);
  ctx.save(); ctx.translate(13, T + (H - T - B) / 2); ctx.rotate(-Math.PI / 2);
  ctx.fillText("NLL (nats)", 0, 0); ctx.restore();
  if (!records.length || !scale.length) return;
  let lo = Math.min(...scale), hi = Math.max(...scale);
  if (hi - lo < 0.1) { lo -= 0.05; hi += 0.05; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const X = (s) => L + (s / smax) * (W - L - R);
  const Y = (v) => T + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (H - T - B);
  const off = (v) => v > hi || v < lo;
  ctx.font = "11px sans-serif"; ctx.strokeStyle = "#ddd";
  ctx.textAlign = "right";
  const [yt, dec] = ticks(lo, hi, 7);
  for (const v of yt) {
    ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(W - R, Y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(dec), L - 4, Y(v) + 4);
  }
  ctx.textAlign = "center";
  for (const s of ticks(0, smax, 5)[0]) ctx.fillText(String(s), X(s), H - B + 14);
  if (entropy !== null) {
    ctx.setLineDash([5, 4]); ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.moveTo(L, Y(entropy)); ctx.lineTo(W - R, Y(entropy)); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = "#000"; ctx.textAlign = "right";
    ctx.fillText("true entropy", W - R - 4, Y(entropy) - 4);
  }
  const curve = (rs, k, color, marks) => {
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.beginPath();
    rs.forEach((r, i) => { const x = X(r.step), y = Y(r[k]);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      if (marks && off(r[k])) ctx.strokeRect(x - 2.5, y - 2.5, 5, 5);
      else if (marks) ctx.fillRect(x - 2, y - 2, 4, 4); });
    ctx.stroke();
  };
  curve(tr, "train", "#aaa", false);
  curve(val, "val", "#e07b00", true);
}

function drawLayers(stages) {
  const div = $("layers");
  div.replaceChildren();
  if (!stages || !stages.length) {
    const p = document.createElement("p"); p.className = "note";
    p.textContent = "It appears at the first evaluation of a run.";
    div.append(p);
  }
  for (const st of stages || []) {
    const fig = document.createElement("figure"), c = document.createElement("canvas");
    c.width = c.height = 170; c.className = "layer";
    // the frame holds the whole grid (equal scales on both axes), unless a few points went
    // far out: then it holds the 2nd to 98th percentiles three times over
    const all = st.lines.flat().filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const q = (k, p) => { const v = all.map((a) => a[k]).sort((a, b) => a - b);
      return v[Math.floor(p * (v.length - 1))]; };
    const frame = (k) => {
      const lo = q(k, 0), hi = q(k, 1), a = q(k, 0.02), b = q(k, 0.98), w = (b - a) * 3;
      return [Math.max(lo, a - w), Math.min(hi, b + w)];
    };
    const [x0, x1] = frame(0), [y0, y1] = frame(1);
    const half = Math.max(x1 - x0, y1 - y0, 1e-6) * 0.55, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const b = [cx - half, cx + half, cy - half, cy + half];
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

function drawData(d, caption) {  // the data, before training and while it trains
  const c = $("draw"), sm = $("samples");
  clear(c); clear(sm); clear($("density")); drawLayers([]);
  drawLoss($("loss"), [], null);
  if ($("draw-mode").checked) {
    points(c, DRAW_BOX, drawn, "#1f77b4", 3);
    $("data-caption").textContent = `your drawing (${drawn.length} points): click and drag here`;
    $("entropy").textContent = "unknown";
    return;
  }
  if (!d) return;
  points(c, d.box, d.points, "#1f77b4", 2);
  points(sm, d.box, d.points, "#aaa", 2);
  $("data-caption").textContent = caption;
  $("entropy").textContent = d.entropy != null ? d.entropy.toFixed(3) : "unknown";
}

function leaveRun() {  // the page stops following its run (which goes on training: its URL
  // follows it again)
  if (source) source.close();
  source = null; current = null;
  history.replaceState(null, "", location.pathname);
  for (const id of ["run", "step", "val-nll", "val-gap", "test-nll", "gap"]) $(id).textContent = "—";
  $("state").textContent = "idle";
  $("stop").disabled = $("resume").disabled = true; $("download").hidden = true;
}

async function chooseData() {
  message("");
  leaveRun();
  const name = $("data").value;
  if ($("draw-mode").checked) { drawData(null, ""); return; }
  if (name === FILE) { drawData(file, `your file ${file.name} (${file.rows} rows)`); return; }
  try {
    const d = await api(`/api/data/${encodeURIComponent(name)}`);
    drawData(d, `${name} (${d.rows} points)`);
  } catch (e) { message(e.message); }
}

function useFile(f) {
  file = f;
  let opt = [...$("data").options].find((o) => o.value === FILE);
  if (!opt) { opt = new Option("", FILE); $("data").add(opt); }
  opt.text = "your file: " + f.name;
  $("data").value = FILE; $("draw-mode").checked = false;
  chooseData();
}

async function upload() {
  message("");
  const f = $("upload").files[0];
  if (!f) return;
  if (f.size > maxFileBytes) {
    message(`${f.name}: over ${maxFileBytes / 2 ** 20} MiB, the playground's limit (train larger files with flowforge train --data FILE)`);
    $("upload").value = "";
    return;
  }
  try {
    const r = await fetch("/api/data/upload", { method: "POST", body: f,
      headers: { "X-Filename": encodeURIComponent(f.name), "Content-Type": "application/octet-stream" } });
    useFile(await answer(r));
  } catch (e) { message(e.message); }
  $("upload").value = "";  // the data menu names the file in use; a refused one is gone
}

async function openPath() {
  message("");
  try { useFile(await api("/api/data/path", { path: $("path").value })); }
  catch (e) { message(e.message); }
}

function render(v) {
  $("run").textContent = v.run; $("state").textContent = v.state;
  if (v.state === "error" && v.message) message(v.message);
  $("stop").disabled = v.state !== "training" && v.state !== "starting";
  $("resume").disabled = !(v.state === "stopped" || v.state === "finished");
  $("download").hidden = !v.records; $("download").href = `/api/runs/${v.run}/download`;
  const recs = v.records || [], last = recs[recs.length - 1], h = v.entropy ?? null;
  $("step").textContent = last ? last.step : "—";
  const val = last && last.val !== null ? last.val : null;
  $("val-nll").textContent = val !== null ? val.toFixed(3) : "—";
  if (v.box) $("entropy").textContent = h !== null ? h.toFixed(3) : "unknown";
  $("val-gap").textContent = val !== null && h !== null ? (val - h).toFixed(3) : "—";
  const s = v.summary;
  $("test-nll").textContent = v.nll ? v.nll.value.toFixed(4) : "—";
  $("gap").textContent = s && s.gap != null ? s.gap.toFixed(4) : "—";
  if (v.box) {
    const d = $("density"), sm = $("samples");
    if (v.density) drawDensity(d, v.density); else clear(d);
    clear(sm);
    points(sm, v.box, v.data || [], "#aaa", 2);
    points(sm, v.box, v.samples || [], "#e07b00", 2);
    if (!$("draw-mode").checked) {
      const c = $("draw"); clear(c);
      points(c, v.box, v.data || [], "#1f77b4", 2);
      const name = v.config.data === "file" ? "a file or a drawing" : v.config.data;
      $("data-caption").textContent = `the data of this run: ${name}`;
    }
  }
  if (v.view_error) message(v.view_error);
  drawLoss($("loss"), recs, h);
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
  const req = { family: $("family").value, depth: Number($("depth").value),
                steps: Number($("steps").value), lr: Number($("lr").value) };
  if ($("draw-mode").checked) req.points = drawn;
  else if ($("data").value === FILE) Object.assign(req, file.source);
  else req.data = $("data").value;
  try { follow((await api("/api/runs", req)).run); } catch (e) { message(e.message); }
}

async function init() {
  const opts = await api("/api/options"), def = opts.default;
  families = opts.families; maxFileBytes = opts.max_file_bytes;
  for (const d of opts.data) $("data").add(new Option(d, d, d === def.data, d === def.data));
  for (const [k, f] of Object.entries(families)) $("family").add(new Option(f.label, k));
  $("family").onchange = () => { const d = families[$("family").value].depth;
    $("depth").min = d[0]; $("depth").max = d[2]; $("depth").value = d[1]; };
  $("family").value = def.family; $("family").onchange();
  $("depth").value = def.depth; $("steps").value = def.steps; $("lr").value = def.lr;
  $("default-note").textContent = def.measured;
  $("data").onchange = chooseData;
  $("upload").onchange = upload;
  $("open-path").onclick = openPath;
  $("path").onkeydown = (e) => { if (e.key === "Enter") openPath(); };
  $("train").onclick = train;
  $("stop").onclick = () => api(`/api/runs/${current}/stop`, {}).catch((e) => message(e.message));
  $("resume").onclick = () => { message(""); api(`/api/runs/${current}/resume`, { steps: 500 }).catch((e) => message(e.message)); };
  $("clear").onclick = () => { drawn = []; drawData(null, ""); };
  $("draw-mode").onchange = chooseData;
  const c = $("draw"); let down = false;
  const add = (e) => {
    if (!$("draw-mode").checked) return;
    const r = c.getBoundingClientRect();
    const x = DRAW_BOX[0] + (e.clientX - r.left) / r.width * (DRAW_BOX[1] - DRAW_BOX[0]);
    const y = DRAW_BOX[3] - (e.clientY - r.top) / r.height * (DRAW_BOX[3] - DRAW_BOX[2]);
    for (let k = 0; k < 5; k++) drawn.push([x + 0.15 * (Math.random() - 0.5), y + 0.15 * (Math.random() - 0.5)]);
    drawData(null, "your drawing");
  };
  c.onmousedown = (e) => { down = true; add(e); };
  c.onmousemove = (e) => { if (down) add(e); };
  window.onmouseup = () => { down = false; };
  const m = location.hash.match(/run=([a-z0-9-]+)/);
  if (m) follow(m[1]); else await chooseData();
}
init().catch((e) => message(e.message));
