// facetwin pages: what every page shares — the element lookup, the API call with the key, the key bar.
"use strict";

const $ = (id) => document.getElementById(id);
const apiKey = { value: sessionStorage.getItem("facetwin-key") || "" };

// "1 face", "3 faces", "1 person", "2 people".
const plural = (n, one, many) => `${n.toLocaleString("en")} ${n === 1 ? one : many || one + "s"}`;

// A JSON API call (``raw``: the body as a Blob); errors carry the server's one sentence and the status.
async function api(method, path, body, raw = false) {
  const headers = {};
  if (apiKey.value) headers["X-API-Key"] = apiKey.value;
  let response;
  try {
    response = await fetch(path, { method, body, headers });
  } catch (err) {
    throw new Error("the server did not answer (" + err.message + ").");
  }
  if (response.status === 401) $("key-bar").hidden = false;
  if (raw && response.ok) return response.blob();
  let doc = null;
  try { doc = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const error = new Error(doc && doc.error ? doc.error : `the server answered ${response.status}.`);
    error.status = response.status;
    throw error;
  }
  return doc;
}

// The key bar: remembers the key for this browser session, then calls ``onSave``.
function setupKeyBar(onSave) {
  $("api-key").value = apiKey.value;
  $("api-key-save").addEventListener("click", () => {
    apiKey.value = $("api-key").value.trim();
    sessionStorage.setItem("facetwin-key", apiKey.value);
    $("key-bar").hidden = true;
    onSave();
  });
}
