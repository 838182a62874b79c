"use strict";
// The search page: take an image (paste, drop, file, URL, /?url=), shrink it, POST it to /search, show scenes.

const MAX_WIDTH = 640;          // the browser shrinks images to this width before upload, as trace.moe's page does
const LOW_SIMILARITY = 0.76;    // below this a result is probably wrong: show a still, not a playing clip
const $ = (id) => document.getElementById(id);

function formatTime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function shrink(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      URL.revokeObjectURL(img.src);
      const scale = Math.min(1, MAX_WIDTH / img.naturalWidth);
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.toBlob((out) => (out ? resolve(out) : reject(new Error("encode"))), "image/jpeg", 0.92);
    };
    img.onerror = () => { URL.revokeObjectURL(img.src); reject(new Error("decode")); };
    img.src = URL.createObjectURL(blob);
  });
}

function searchParams() {
  const params = new URLSearchParams();
  params.set("anilistInfo", "");
  if ($("cut-borders").checked) params.set("cutBorders", "");
  const series = $("series").value.trim();
  if (series) params.set("anilistID", series);
  return params;
}

const MESSAGES = {
  402: "Your search quota is used up, or too many searches at once.",
  403: "The API key is not valid.",
  413: "That image is too large (25 MiB at most).",
  429: "Too many searches; wait a minute.",
  503: "The server is busy; try again in a moment.",
};

async function runSearch(request) {
  say("Searching…");
  $("results").replaceChildren();
  let response;
  try {
    response = await request;
  } catch (err) {
    say("The server did not answer.", true);
    return;
  }
  let body = {};
  try { body = await response.json(); } catch (err) { /* a proxy's HTML error page */ }
  if (!response.ok) {
    say(MESSAGES[response.status] || body.error || `Search failed (HTTP ${response.status}).`, true);
    return;
  }
  show(body.result || []);
}

function titleOf(anilist) {
  if (anilist && typeof anilist === "object") {
    const t = anilist.title || {};
    return t.english || t.romaji || t.native || String(anilist.id);
  }
  return `Series ${anilist}`;
}

function show(results) {
  if (!results.length) { say("No match in this library."); return; }
  const best = results[0].similarity;
  say(best < LOW_SIMILARITY ? "No confident match; the closest scenes are below." : `${results.length} scene(s) found.`);
  const template = $("result-template");
  for (const r of results) {
    const item = template.content.firstElementChild.cloneNode(true);
    const low = r.similarity < LOW_SIMILARITY;
    item.classList.toggle("low", low);
    item.querySelector(".title").textContent = titleOf(r.anilist);
    const episode = r.episode === null || r.episode === undefined ? "" : `Episode ${[].concat(r.episode).join("-")} · `;
    item.querySelector(".where").textContent = `${episode}${formatTime(r.from)} – ${formatTime(r.to)} (at ${formatTime(r.at)}) · ${r.filename}`;
    item.querySelector(".similarity").textContent = `similarity ${(r.similarity * 100).toFixed(1)}%`;
    const media = item.querySelector(".media");
    if (low) {
      const img = document.createElement("img");
      img.src = r.image;
      img.alt = "matched frame";
      media.append(img);
    } else {
      const video = document.createElement("video");
      Object.assign(video, { src: `${r.video}?mute`, muted: true, loop: true, autoplay: true, playsInline: true });
      video.setAttribute("muted", "");
      media.append(video);
    }
    $("results").append(item);
  }
}

async function searchBlob(blob) {
  if (!blob.type.startsWith("image/")) { say("That is not an image.", true); return; }
  let small;
  try {
    small = await shrink(blob);
  } catch (err) {
    say("That image could not be read.", true);
    return;
  }
  $("query").src = URL.createObjectURL(small);
  $("query").hidden = false;
  const form = new FormData();
  form.append("image", small, "query.jpg");
  await runSearch(fetch(`/search?${searchParams()}`, { method: "POST", body: form }));
}

function searchUrl(url) {
  const params = searchParams();
  params.set("url", url);
  $("query").src = url;
  $("query").hidden = false;
  return runSearch(fetch(`/search?${params}`));
}

document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) { event.preventDefault(); searchBlob(item.getAsFile()); }
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) searchBlob(file);
  else {
    const url = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
    if (url) searchUrl(url.trim());
  }
});
$("file").addEventListener("change", (event) => { if (event.target.files[0]) searchBlob(event.target.files[0]); });
$("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url").value.trim();
  if (url) searchUrl(url);
});
const linked = new URLSearchParams(location.search).get("url");
if (linked) { $("url").value = linked; searchUrl(linked); }
