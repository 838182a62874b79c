"use strict";
// The search page: take an image (paste, drop, file, URL, /?url=), shrink it, POST it to /search, show scenes.

const MAX_WIDTH = 640;          // the browser shrinks images to this width before upload, as trace.moe's page does
const LOW_SIMILARITY = 0.76;    // below this a result is probably wrong: say so, and do not play it by itself
const $ = (id) => document.getElementById(id);
let seriesList = [];            // [{anilist, series, title}] from /series, for the filter by title

function formatTime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// HH:MM:SS.mmm: the moment to the millisecond, as players (mpv, VLC, ffmpeg -ss) take it.
function preciseTime(seconds) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}.${pad(ms % 1000, 3)}`;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

// An error of this page (not an image, no such series): the results of an earlier search go, so none is mistaken
// for an answer to this one.
function fail(text) {
  $("results").replaceChildren();
  say(text, true);
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

// The series id that the filter box names: an id as typed, or the series whose title (or folder) it is or contains.
function seriesFilter() {
  const typed = $("series").value.trim();
  if (!typed) return { id: null };
  if (/^\d+$/.test(typed)) return { id: typed };
  const needle = typed.toLocaleLowerCase();
  const names = (s) => [s.title, s.series].map((n) => String(n).toLocaleLowerCase());
  const exact = seriesList.filter((s) => names(s).includes(needle));
  const partial = seriesList.filter((s) => names(s).some((n) => n.includes(needle)));
  const found = exact.length ? exact : partial;
  if (found.length === 1) return { id: String(found[0].anilist) };
  if (!found.length) return { error: `No series in this library is called “${typed}”.` };
  return { error: `Several series match “${typed}”: ${found.slice(0, 5).map((s) => s.title).join(", ")}.` };
}

function searchParams(filter) {
  const params = new URLSearchParams();
  params.set("anilistInfo", "");
  if ($("cut-borders").checked) params.set("cutBorders", "");
  if (filter.id) params.set("anilistID", filter.id);
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

// The series' title from its metadata, else its folder name.
function titleOf(r) {
  const t = (r.anilist && typeof r.anilist === "object" && r.anilist.title) || {};
  return t.english || t.romaji || t.native || r.series || `Series ${r.anilist}`;
}

function siteName(url) {
  try {
    const host = new URL(url).hostname;
    if (host.endsWith("anilist.co")) return "AniList";
    if (host.endsWith("bilibili.com")) return "bilibili";
    return host;
  } catch (err) {
    return "";
  }
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = Object.assign(document.createElement("textarea"), { value: text });
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

// A preview that plays while the pointer is over its result (or after a tap), and has controls to pause it.
function preview(r, label, autoplay) {
  const video = document.createElement("video");
  Object.assign(video, { src: `${r.video}&mute`, poster: r.image, muted: true, loop: true, playsInline: true,
    controls: true, preload: autoplay ? "auto" : "none", autoplay });
  video.setAttribute("muted", "");
  video.setAttribute("aria-label", label);
  return video;
}

const SEGMENT_NAMES = { op: "Opening", ed: "Ending", recap: "Recap", repeat: "Repeated scene" };

// "1-4, 7": episode numbers as people write them (consecutive whole numbers as ranges)
function episodeRanges(numbers) {
  const flat = [...new Set(numbers.filter((n) => n !== null && n !== undefined).map((n) => Number([].concat(n)[0])))]
    .sort((a, b) => a - b);
  const parts = [];
  let run = [];
  for (const n of [...flat, NaN]) {
    if (run.length && n === run[run.length - 1] + 1 && Number.isInteger(n)) { run.push(n); continue; }
    if (run.length) parts.push(run.length === 1 ? `${run[0]}` : `${run[0]}-${run[run.length - 1]}`);
    run = Number.isNaN(n) ? [] : [n];
  }
  return parts.join(", ");
}

// "Opening, episodes 1-12" for a moment several episodes share; the others' moments in the tooltip
function describeSegment(r) {
  if (!r.segment) return null;
  const others = r.occurrences || [];
  const shown = episodeRanges([r.episode, ...others.map((o) => o.episode)]);
  const text = `${SEGMENT_NAMES[r.segment] || r.segment}, ${shown ? `episodes ${shown}` : `${others.length + 1} episodes`}`;
  const also = others.map((o) => `${o.filename} at ${formatTime(o.at)}`).join("; ");
  return { text, also };
}

function show(results) {
  if (!results.length) { say("No match in this library."); return; }
  const best = results[0].similarity;
  say(best < LOW_SIMILARITY ? "No confident match; the closest scenes are below." : `${results.length} scene(s) found.`);
  const template = $("result-template");
  results.forEach((r, i) => {
    const item = template.content.firstElementChild.cloneNode(true);
    const low = r.similarity < LOW_SIMILARITY;
    item.classList.toggle("low", low);
    const title = titleOf(r);
    item.querySelector(".title").textContent = title;
    const episode = r.episode === null || r.episode === undefined ? "" : `Episode ${[].concat(r.episode).join("-")} · `;
    item.querySelector(".where").textContent = `${episode}${formatTime(r.from)} – ${formatTime(r.to)} (at ${formatTime(r.at)}) · ${r.filename}`;
    const segment = describeSegment(r);
    if (segment) {
      const line = item.querySelector(".segment");
      line.textContent = segment.text;
      line.title = `Also: ${segment.also}`;
      line.hidden = false;
    }
    item.querySelector(".similarity").textContent = `similarity ${(r.similarity * 100).toFixed(1)}%${low ? " (probably not this)" : ""}`;
    const label = `Preview of ${title}, ${episode}at ${formatTime(r.at)}`;
    const video = preview(r, label, i === 0 && !low);
    item.querySelector(".media").append(video);
    // hover (or focus within) plays a result's preview; leaving pauses the ones that hovering started
    // (a mouse only: a tap is a click, below)
    item.addEventListener("pointerenter", (event) => {
      if (event.pointerType === "mouse" && video.paused) { video.dataset.hovered = "1"; video.play().catch(() => {}); }
    });
    item.addEventListener("pointerleave", (event) => {
      if (event.pointerType === "mouse" && video.dataset.hovered) { delete video.dataset.hovered; video.pause(); }
    });
    // a tap (or click) on the result, outside its controls and links, plays or pauses it: phones have no hover
    item.addEventListener("click", (event) => {
      if (event.target.closest("a, button, video")) return;
      if (video.paused) video.play().catch(() => {}); else video.pause();
    });
    const info = r.anilist && typeof r.anilist === "object" ? r.anilist : {};
    const cover = info.coverImage && info.coverImage.large;
    if (cover) {
      const img = Object.assign(document.createElement("img"), { src: cover, alt: `Cover of ${title}`, className: "cover" });
      item.querySelector(".info").prepend(img);
    }
    const actions = item.querySelector(".actions");
    for (const url of new Set([info.siteUrl, info.link].filter((u) => u && siteName(u)))) {
      actions.append(" ", Object.assign(document.createElement("a"), { href: url, textContent: `${title} on ${siteName(url)}`, rel: "noopener" }));
    }
    const copy = actions.querySelector(".copy");
    copy.setAttribute("aria-label", `Copy timestamp ${preciseTime(r.at)} of ${title}`);
    copy.addEventListener("click", async () => {
      const stamp = preciseTime(r.at);
      try { await copyText(stamp); say(`Copied ${stamp}.`); } catch (err) { say(`Copy failed; the moment is ${stamp}.`, true); }
    });
    $("results").append(item);
  });
}

async function searchBlob(blob) {
  if (!blob.type.startsWith("image/")) { fail("That is not an image."); return; }
  const filter = seriesFilter();
  if (filter.error) { fail(filter.error); return; }
  let small;
  try {
    small = await shrink(blob);
  } catch (err) {
    fail("That image could not be read.");
    return;
  }
  $("query").src = URL.createObjectURL(small);
  $("query").hidden = false;
  const form = new FormData();
  form.append("image", small, "query.jpg");
  await runSearch(fetch(`/search?${searchParams(filter)}`, { method: "POST", body: form }));
}

function searchUrl(url) {
  const filter = seriesFilter();
  if (filter.error) { fail(filter.error); return Promise.resolve(); }
  const params = searchParams(filter);
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
// Enter or Space on the drop zone itself (not on a control inside it) opens the file picker.
drop.addEventListener("keydown", (event) => {
  if (event.target === drop && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); $("file").click(); }
});
$("choose").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  event.target.value = "";  // so that choosing the same file again is a change, and searches again
  if (file) searchBlob(file);
});
$("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url").value.trim();
  if (url) searchUrl(url);
});

fetch("/series").then((r) => (r.ok ? r.json() : { series: [] })).then((body) => {
  seriesList = body.series || [];
  $("series-list").replaceChildren(...seriesList.map((s) => Object.assign(document.createElement("option"), { value: s.title, label: `#${s.anilist}` })));
}).catch(() => { /* the filter then takes ids only */ });

const linked = new URLSearchParams(location.search).get("url");
if (linked) { $("url").value = linked; searchUrl(linked); }
