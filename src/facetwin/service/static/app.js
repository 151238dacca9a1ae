// facetwin web page: plain JavaScript, no build step. Talks to the JSON API of the same server.
"use strict";

const state = { a: null, b: null, threshold: null };

function fmt(x, digits = 3) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

// ------------------------------------------------------------------ drawing
function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${file.name}: the browser cannot show this file.`));
    img.src = url;
  });
}

// Draw the photo scaled into its drop zone, and the face (box + five landmarks) when given.
function draw(canvas, img, face) {
  const zone = canvas.parentElement;
  const maxW = zone.clientWidth - 16, maxH = zone.clientHeight - 16;
  const scale = Math.min(maxW / img.naturalWidth, maxH / img.naturalHeight, 4);
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(img.naturalWidth * scale));
  const h = Math.max(1, Math.round(img.naturalHeight * scale));
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.drawImage(img, 0, 0, w, h);
  canvas.hidden = false;
  zone.classList.add("has-image");
  if (!face || !face.box) return;
  // Boxes are in the pixels of the photo as the server decoded it (EXIF-rotated), like the browser shows it.
  const sx = w / (face.width || img.naturalWidth), sy = h / (face.height || img.naturalHeight);
  const [x, y, bw, bh] = face.box;
  const side = Math.min(bw * sx, bh * sy);
  ctx.lineWidth = Math.max(1.5, Math.min(3, side / 20));
  ctx.strokeStyle = "#22d3ee";
  ctx.shadowColor = "rgba(0,0,0,0.6)";
  ctx.shadowBlur = 4;
  ctx.strokeRect(x * sx, y * sy, bw * sx, bh * sy);
  ctx.shadowBlur = 0;
  if (face.landmarks) {
    ctx.fillStyle = "#facc15";
    for (const [lx, ly] of face.landmarks) {
      ctx.beginPath();
      ctx.arc(lx * sx, ly * sy, Math.max(1, Math.min(3, side / 30)), 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  if (typeof face.score === "number") {
    const label = `face ${Math.round(face.score * 100)}%`;
    ctx.font = "600 12px system-ui, sans-serif";
    const tw = ctx.measureText(label).width + 10;
    const ty = Math.max(0, y * sy - 20);
    ctx.fillStyle = "#22d3ee";
    ctx.fillRect(x * sx - 1.5, ty, tw, 18);
    ctx.fillStyle = "#0b1220";
    ctx.fillText(label, x * sx + 3.5, ty + 13);
  }
}

function setupDrop(zoneId, inputId, onFile) {
  const zone = $(zoneId), input = $(inputId);
  input.addEventListener("change", () => { if (input.files.length) onFile(input.files[0]); });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------ verify view
function setVerdict(kind, text, foot = "") {
  $("verdict").dataset.state = kind;
  $("verdict-text").textContent = text;
  $("verdict-foot").textContent = foot;
}

function showFigures(doc) {
  $("distance").textContent = doc ? fmt(doc.distance, 4) : "–";
  $("threshold").textContent = doc ? fmt(doc.threshold, 4) : "–";
  $("probability").textContent = doc && typeof doc.probability === "number"
    ? (doc.probability * 100).toFixed(1) + " %" : "–";
  const dot = $("meter-dot"), mark = $("meter-threshold");
  if (!doc) { dot.style.display = "none"; return; }
  // Cosine distance lives in [0, 2]; the meter shows [0, 2 × threshold] so the threshold sits in the middle.
  const span = 2 * doc.threshold;
  mark.style.left = "50%";
  dot.style.display = "block";
  dot.style.left = Math.min(100, Math.max(0, (doc.distance / span) * 100)) + "%";
}

async function choose(slot, file) {
  const name = $("name-" + slot), note = $("note-" + slot);
  name.textContent = file.name;
  note.textContent = "";
  note.className = "face-note";
  try {
    const img = await loadImage(file);
    state[slot] = { file, img };
    draw($("canvas-" + slot), img, null);
  } catch (err) {
    state[slot] = { file, img: null };
    $("canvas-" + slot).hidden = true;
    $("drop-" + slot).classList.remove("has-image");
  }
  runVerify();
}

let verifyRun = 0;
async function runVerify() {
  if (!state.a || !state.b) {
    setVerdict("empty", state.a || state.b ? "Add the second photo" : "Waiting for two photos");
    showFigures(null);
    return;
  }
  const run = ++verifyRun;
  setVerdict("busy", "Comparing…");
  showFigures(null);
  const form = new FormData();
  form.append("a", state.a.file, state.a.file.name);
  form.append("b", state.b.file, state.b.file.name);
  try {
    const doc = await api("POST", "v1/verify", form);
    if (run !== verifyRun) return;
    for (const [slot, face] of [["a", doc.faces[0]], ["b", doc.faces[1]]]) {
      if (state[slot].img) draw($("canvas-" + slot), state[slot].img, face);
      $("note-" + slot).textContent = face.box
        ? `face found (${face.width}×${face.height} photo)` : face.note;
    }
    const same = doc.same;
    const sign = same ? "≤" : ">";
    setVerdict(same ? "same" : "different", same ? "Same person" : "Different people",
      `${doc.distance_kind} distance ${fmt(doc.distance, 4)} ${sign} threshold ${fmt(doc.threshold, 4)}` +
      ` · ${doc.model} · ${(doc.seconds * 1000).toFixed(0)} ms`);
    showFigures(doc);
  } catch (err) {
    if (run !== verifyRun) return;
    setVerdict("error", "Cannot compare", err.message);
    // Point at the photo the message names.
    for (const slot of ["a", "b"]) {
      if (state[slot] && err.message.startsWith(state[slot].file.name + ":")) {
        $("note-" + slot).textContent = err.message;
        $("note-" + slot).className = "face-note bad";
      }
    }
  }
}

// ------------------------------------------------------------------ people view
function personName(p) {
  return p.person ?? p.name ?? String(p);
}

async function refreshPeople() {
  const list = $("people-list");
  try {
    const doc = await api("GET", "v1/people");
    list.replaceChildren();
    if (!doc.people.length) {
      list.innerHTML = '<li class="muted">nobody enrolled yet</li>';
      return;
    }
    for (const p of doc.people) {
      const li = document.createElement("li");
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = personName(p);
      const count = document.createElement("span");
      count.className = "muted";
      const n = p.images ?? p.count ?? p.embeddings;
      count.textContent = typeof n === "number" ? `${n} photo${n === 1 ? "" : "s"}` : "";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link danger";
      remove.textContent = "remove";
      remove.addEventListener("click", async () => {
        try {
          await api("DELETE", "v1/people/" + encodeURIComponent(personName(p)));
        } catch (err) { $("enroll-status").textContent = err.message; }
        refreshPeople();
      });
      li.append(who, count, remove);
      list.append(li);
    }
  } catch (err) {
    list.innerHTML = "";
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = err.message;
    list.append(li);
  }
}

async function enroll(event) {
  event.preventDefault();
  const name = $("enroll-name").value.trim(), files = $("enroll-files").files, status = $("enroll-status");
  if (!name || !files.length) { status.textContent = "Give a name and at least one photo."; return; }
  const form = new FormData();
  for (const f of files) form.append("images", f, f.name);
  status.className = "status";
  status.textContent = `Enrolling ${files.length} photo${files.length === 1 ? "" : "s"} of ${name}…`;
  try {
    const doc = await api("POST", "v1/people/" + encodeURIComponent(name) + "/images", form);
    status.className = "status good";
    status.textContent = `Enrolled ${doc.enrolled} photo${doc.enrolled === 1 ? "" : "s"} of ${doc.person}.`;
    $("enroll-files").value = "";
    $("enroll-name").value = "";
  } catch (err) {
    status.className = "status bad";
    status.textContent = err.message;
  }
  refreshPeople();
}

function candidatesOf(doc) {
  return doc.matches ?? doc.candidates ?? doc.results ?? doc.top ?? [];
}

async function identify(file) {
  const status = $("identify-status"), out = $("identify-result");
  out.replaceChildren();
  status.className = "status";
  status.textContent = `Looking for ${file.name} in the gallery…`;
  let img = null;
  try { img = await loadImage(file); draw($("canvas-id"), img, null); } catch (_) { /* server will say */ }
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("top_k", "3");
  try {
    const doc = await api("POST", "v1/identify", form);
    if (img) draw($("canvas-id"), img, doc.face);
    const list = candidatesOf(doc);
    const best = list[0];
    const known = best && doc.person && doc.person !== "unknown";
    status.className = "status " + (known ? "good" : "bad");
    status.textContent = !list.length ? "The gallery is empty." : known
      ? `Best match: ${doc.person}` : "Nobody in the gallery is close enough: unknown person.";
    for (const c of list) {
      const li = document.createElement("li");
      const p = typeof c.probability === "number" ? ` · ${(c.probability * 100).toFixed(1)} %` : "";
      li.innerHTML = "<span class='who'></span><span class='muted'></span>";
      li.children[0].textContent = personName(c);
      const within = typeof doc.threshold === "number" && c.distance <= doc.threshold ? " · within threshold" : "";
      li.children[1].textContent = `distance ${fmt(c.distance, 4)}${p}${within}`;
      out.append(li);
    }
  } catch (err) {
    status.className = "status bad";
    status.textContent = err.message;
  }
}

// ------------------------------------------------------------------ start
// One view at a time; the address keeps it (``#people``), so a reload or a link from the Collection page lands there.
function showView(viewId) {
  for (const tab of document.querySelectorAll(".tab")) {
    const on = tab.dataset.view === viewId;
    tab.classList.toggle("active", on);
    tab.setAttribute("aria-selected", String(on));
    $(tab.dataset.view).hidden = !on;
    if (on && location.hash !== tab.dataset.hash) history.replaceState(null, "", tab.dataset.hash || location.pathname);
  }
  if (viewId === "view-people") refreshPeople();
}

function viewOfAddress() {
  const tab = [...document.querySelectorAll(".tab")].find((t) => t.dataset.hash && t.dataset.hash === location.hash);
  return tab ? tab.dataset.view : "view-verify";
}

async function connect() {
  try {
    const h = await api("GET", "healthz");
    state.threshold = h.threshold;
    $("server-info").textContent = `model ${h.model} · threshold ${fmt(h.threshold, 4)}` +
      (h.gallery ? " · gallery on" : " · no gallery");
    $("key-bar").hidden = !h.api_key_required || !!apiKey.value;
  } catch (err) {
    $("server-info").textContent = err.status === 401 ? "API key needed" : err.message;
  }
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
window.addEventListener("hashchange", () => showView(viewOfAddress()));
setupDrop("drop-a", "file-a", (f) => choose("a", f));
setupDrop("drop-b", "file-b", (f) => choose("b", f));
setupDrop("drop-id", "file-id", identify);
$("enroll-form").addEventListener("submit", enroll);
setupKeyBar(() => {
  connect();
  runVerify();
});
showFigures(null);
if (viewOfAddress() !== "view-verify") showView(viewOfAddress());
connect();
