"use strict";
// The library page: /status as a list, and every series with its episodes and their status (/series), filterable.
const LABELS = {series: "Series", episodes: "Episodes", hours: "Hours of video", frames: "Frames indexed",
  index_bytes: "Index size", failed: "Files that failed", stills: "Stills (/match)", model: "Model", milvus: "Vector store"};
const $ = (id) => document.getElementById(id);

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function siteName(url) {
  try {
    const host = new URL(url).hostname;
    return host.endsWith("anilist.co") ? "AniList" : host.endsWith("bilibili.com") ? "bilibili" : host;
  } catch (err) {
    return "the web";
  }
}

function duration(seconds) {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

fetch("/status").then((r) => r.json()).then((body) => {
  const list = $("status");
  list.replaceChildren();
  if (body.error) { list.textContent = body.error; return; }
  for (const [key, label] of Object.entries(LABELS)) {
    const dd = el("dd", { id: `status-${key}` }, key === "index_bytes" ? human(body[key]) : String(body[key]));
    list.append(el("dt", {}, label), dd);
  }
}).catch(() => { $("status").textContent = "The server did not answer."; });

function seriesCard(s) {
  const heading = el("h3", {}, s.title, " ", el("span", { className: "muted" }, `#${s.anilist} · ${s.series}/`));
  const card = el("section", { className: "series" }, heading);
  card.setAttribute("aria-label", s.title);
  const about = el("p", { className: "about" });
  if (s.cover) about.append(el("img", { src: s.cover, alt: `Cover of ${s.title}`, className: "cover" }));
  if (s.link) about.append(el("a", { href: s.link, rel: "noopener" }, `${s.title} on ${siteName(s.link)}`));
  if (about.childNodes.length) card.append(about);
  const head = el("tr", {}, ...["Episode", "File", "Length", "Status"].map((h) => el("th", { scope: "col" }, h)));
  const rows = s.episodes.map((e) => {
    const status = el("td", { className: `status-${e.status}` }, e.status);
    if (e.error) status.append(el("br"), el("span", { className: "why" }, e.error));
    const row = el("tr", {}, el("td", {}, e.episode === null ? "–" : [].concat(e.episode).join("-")),
      el("td", { className: "file" }, e.filename), el("td", {}, duration(e.duration)), status);
    row.dataset.text = `${e.filename} ${e.status} ${e.error || ""}`.toLocaleLowerCase();
    return row;
  });
  const table = el("table", {}, el("caption", {}, `Episodes of ${s.title}`), el("thead", {}, head), el("tbody", {}, ...rows));
  card.append(table);
  card.dataset.text = `${s.title} ${s.series} ${s.anilist}`.toLocaleLowerCase();
  return card;
}

function applyFilter() {
  const needle = $("filter").value.trim().toLocaleLowerCase();
  let shown = 0;
  for (const card of $("series-listing").children) {
    const whole = !needle || card.dataset.text.includes(needle);
    let rows = 0;
    for (const row of card.querySelectorAll("tbody tr")) {
      row.hidden = !(whole || row.dataset.text.includes(needle));
      rows += row.hidden ? 0 : 1;
    }
    card.hidden = rows === 0;
    shown += card.hidden ? 0 : 1;
  }
  const total = $("series-listing").children.length;
  $("library-message").textContent = needle ? `${shown} of ${total} series match “${$("filter").value.trim()}”.` : `${total} series.`;
}

fetch("/series").then((r) => r.json()).then((body) => {
  if (body.error) { $("library-message").textContent = body.error; return; }
  $("series-listing").replaceChildren(...body.series.map(seriesCard));
  applyFilter();
}).catch(() => { $("library-message").textContent = "The server did not answer."; });
$("filter").addEventListener("input", applyFilter);
