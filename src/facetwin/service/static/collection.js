// facetwin Collection view: the clusters of an index as contact sheets, biggest first, with a box to name each.
"use strict";

const PAGE = 30, FACES = 12;
const state = { offset: 0, selected: new Set() };

function say(text, bad = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", bad);
}

function thumbnail(faceId) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = `face ${faceId}`;
  img.width = img.height = 72;
  img.dataset.face = faceId;
  api("GET", `v1/faces/${faceId}/thumbnail`, undefined, true)
    .then((blob) => { img.src = URL.createObjectURL(blob); })
    .catch((err) => { img.title = err.message; img.classList.add("missing"); });
  return img;
}

function card(c) {
  const el = document.createElement("article");
  el.className = "cluster" + (c.name ? " named" : "");
  el.dataset.cluster = c.id;
  const head = document.createElement("div");
  head.className = "cluster-head";
  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.title = "select for merging";
  pick.addEventListener("change", () => {
    if (pick.checked) state.selected.add(c.id); else state.selected.delete(c.id);
    $("merge").disabled = state.selected.size < 2;
  });
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = `#${c.id} · ${plural(c.faces, "face")}`;
  head.append(pick, count);
  const sheet = document.createElement("div");
  sheet.className = "sheet";
  for (const f of c.face_ids) sheet.append(thumbnail(f));
  if (c.faces > c.face_ids.length) {
    const more = document.createElement("span");
    more.className = "more-faces";
    more.textContent = `+${c.faces - c.face_ids.length}`;
    sheet.append(more);
  }
  const form = document.createElement("form");
  form.className = "name-form";
  const input = document.createElement("input");
  input.type = "text";
  input.maxLength = 200;
  input.placeholder = "Who is this?";
  input.value = c.name || "";
  input.setAttribute("aria-label", `name of cluster ${c.id}`);
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Name";
  form.append(input, save);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData();
    body.append("name", input.value);
    try {
      const r = await api("POST", `v1/clusters/${c.id}/name`, body);
      el.classList.toggle("named", Boolean(r.name));
      say(r.name ? `cluster ${c.id} is now ${r.name}.` : `cluster ${c.id} has no name now.`);
    } catch (err) { say(err.message, true); }
  });
  el.append(head, sheet, form);
  return el;
}

// "Update clusters" works only over an index the server reads: disabled, with the server's reason beside it, when the
// clusters cannot be loaded (no --index, or an API key still missing).
function canRun(reason) {
  $("run").disabled = Boolean(reason);
  $("run").title = reason || "cluster the faces added since the last run";
}

async function load(reset = true) {
  if (reset) {
    state.offset = 0;
    state.selected.clear();
    $("merge").disabled = true;
    $("clusters").replaceChildren();
  }
  try {
    const doc = await api("GET", `v1/clusters?offset=${state.offset}&limit=${PAGE}&faces=${FACES}`);
    $("summary").textContent = doc.clustered
      ? `${plural(doc.faces, "face")} · ${plural(doc.clusters, "person", "people")} (${doc.named} named) · ` +
        `${doc.noise} unmatched`
      : `${plural(doc.faces, "face")}, not clustered yet`;
    canRun(null);
    if (!doc.clustered) say("This index has not been clustered yet: press Update clusters.");
    for (const c of doc.items) $("clusters").append(card(c));
    state.offset += doc.items.length;
    $("more").hidden = state.offset >= doc.clusters;
  } catch (err) {
    $("summary").textContent = err.status === 503 ? "no index" : "no collection";
    canRun(err.message);
    say(err.message, true);
  }
}

$("run").addEventListener("click", async () => {
  say("clustering…");
  $("run").disabled = true;
  try {
    const r = await api("POST", "v1/clusters/run");
    await load();
    say(`${plural(r.clusters, "person", "people")}; ${plural(r.new_faces, "new face")}, ${r.joined} joined known ` +
        `people, ${r.new_clusters} new.`);
  } catch (err) {
    $("run").disabled = false;
    say(err.message, true);
  }
});

$("merge").addEventListener("click", async () => {
  const ids = [...state.selected];
  const body = new FormData();
  body.append("ids", ids.join(","));
  try {
    const r = await api("POST", "v1/clusters/merge", body);
    say(`merged into cluster ${r.id} (${plural(r.faces, "face")}).`);
    await load();
  } catch (err) { say(err.message, true); }
});

$("more").addEventListener("click", () => load(false));
setupKeyBar(() => load());
load();
