"use strict";
// The library page: /status as a list.
const LABELS = {series: "Series", episodes: "Episodes", hours: "Hours of video", frames: "Frames indexed",
  index_bytes: "Index size", failed: "Files that failed", stills: "Stills (/match)", model: "Model", milvus: "Vector store"};

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

fetch("/status").then((r) => r.json()).then((body) => {
  const list = document.getElementById("status");
  list.replaceChildren();
  if (body.error) { list.textContent = body.error; return; }
  for (const [key, label] of Object.entries(LABELS)) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = key === "index_bytes" ? human(body[key]) : String(body[key]);
    dd.id = `status-${key}`;
    list.append(dt, dd);
  }
}).catch(() => { document.getElementById("status").textContent = "The server did not answer."; });
