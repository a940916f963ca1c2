// Live gateway health; every value from the server is set with textContent (never HTML).
"use strict";
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}
function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return seconds < 60 ? `${seconds.toFixed(1)} s ago` : `${Math.round(seconds / 60)} min ago`;
}
async function refresh() {
  try {
    const res = await fetch("/health", { cache: "no-store" });
    const doc = await res.json();
    const overall = document.getElementById("overall");
    overall.textContent = doc.status;
    overall.className = "pill " + (doc.status === "ok" ? "ok" : "bad");
    const body = document.querySelector("#links tbody");
    body.replaceChildren();
    for (const pbx of doc.pbx) {
      const tr = document.createElement("tr");
      cell(tr, pbx.name);
      cell(tr, `${pbx.host}:${pbx.port}`);
      cell(tr, pbx.status, pbx.logged_in ? "" : "bad");
      cell(tr, pbx.since ? new Date(pbx.since * 1000).toLocaleTimeString() : "—");
      cell(tr, age(pbx.last_event_age));
      cell(tr, String(pbx.reconnects));
      cell(tr, String((doc.open_calls || {})[pbx.name] ?? 0));
      body.appendChild(tr);
    }
  } catch (e) {
    document.getElementById("overall").textContent = "unreachable";
  }
}
refresh();
setInterval(refresh, 2000);
