// The operator page: polls api/stats and api/recent (relative URLs: works behind a path prefix)
// and redraws. Everything from the collector is put in with textContent, never as HTML: node
// labels, topics and events are chosen by senders.
"use strict";

const state = { refreshMs: 2000, filter: "", timer: null, filterTimer: null, busy: false, again: false };

function $(id) { return document.getElementById(id); }

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(tableId, items, draw) {
  const body = $(tableId).querySelector("tbody");
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    draw(tr, item);
    return tr;
  });
  body.replaceChildren(...rows);
}

// "2026-12-01T19:15:26.428+0000" → "19:15:26.428", the whole stamp on hover
function clock(row, stamp) {
  const td = cell(row, stamp ? stamp.slice(11, 23) : "");
  td.title = stamp || "";
  return td;
}

function number(n) { return Number(n).toLocaleString("en-US"); }

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) throw new Error("signed out: open /ui?token=YOUR_TOKEN again");
  if (!response.ok) throw new Error(url + " answered " + response.status);
  return response.json();
}

function showProblem(text) {
  const p = $("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

function drawStats(s) {
  state.refreshMs = Math.max(200, s.refresh_s * 1000);
  const health = $("health");
  health.textContent = s.health.status;
  health.className = "badge " + s.health.status;
  $("updated").textContent = "updated " + s.now + " · up " + seconds(s.uptime_s);
  showProblem(s.health.reason ? "Storage: " + s.health.reason : "");

  const ingest = s.ingest;
  $("rate-window").textContent = "(rates over the last " + ingest.window_s + " s)";
  $("total-rate").textContent = number(ingest.events_per_s);
  $("total-events").textContent = number(ingest.total);
  $("requests-503").textContent = number(s.requests.unavailable_503);
  $("dead-total").textContent = number(s.dead_letter.total);
  fill("topics", ingest.topics, (tr, t) => {
    tr.dataset.topic = t.topic;
    cell(tr, t.topic);
    cell(tr, number(t.events_per_s), "num rate");
    cell(tr, number(t.last_minute), "num minute");
    cell(tr, number(t.total), "num total");
  });

  $("stale-after").textContent = "(quiet after " + seconds(s.stale_after_s) + ")";
  const stale = s.nodes.filter((n) => n.stale);
  const banner = $("stale-banner");
  banner.hidden = stale.length === 0;
  banner.textContent = stale.length
    ? stale.length + " node(s) quiet for more than " + seconds(s.stale_after_s) + ": " + stale.map((n) => n.node).join(", ")
    : "";
  fill("nodes", s.nodes, (tr, n) => {
    tr.dataset.node = n.node;
    if (n.stale) tr.className = "stale";
    cell(tr, n.node);
    cell(tr, n.address);
    clock(tr, n.last_seen);
    cell(tr, seconds(n.silent_s), "num");
    cell(tr, seconds(n.lag_s), "num");
    cell(tr, number(n.events), "num");
    cell(tr, n.stale ? "quiet" : "ok", n.stale ? "status" : "status status-ok");
  });

  fill("destinations", s.destinations, (tr, d) => {
    tr.dataset.destination = d.name;
    cell(tr, d.name);
    cell(tr, d.type);
    cell(tr, d.files_waiting === undefined ? "" : number(d.files_waiting), "num");
    cell(tr, d.staging_bytes === undefined ? "" : bytes(d.staging_bytes), "num");
    const published = d.files_published !== undefined ? number(d.files_published) + " files"
      : number(d.messages_published) + " messages, " + number(d.publish_failures) + " failures";
    cell(tr, published, "num");
    cell(tr, d.problem || "", d.problem ? "problem" : "");
  });

  const reasons = Object.entries(s.dead_letter.by_reason).map(([r, n]) => r + ": " + number(n));
  $("dead-reasons").textContent = reasons.length ? reasons.join(" · ") : "nothing dead-lettered since start";
  fill("dead", s.dead_letter.latest, (tr, d) => {
    clock(tr, d.received);
    cell(tr, d.reason);
    cell(tr, d.detail, "wrap");
    cell(tr, d.node || d.address);
    cell(tr, d.raw, "event");
  });
}

function drawRecent(r) {
  $("recent-count").textContent = r.count + (r.filter ? " matching" : "") + " of the latest events";
  fill("recent", r.events, (tr, line) => {
    const event = line.clientEvent || {};
    clock(tr, line.serverTimestamp);
    cell(tr, line.topic);
    cell(tr, line.routingKey);
    cell(tr, line.node || line.origAddress);
    cell(tr, event.msgType);
    cell(tr, event.authUser);
    cell(tr, JSON.stringify(event), "event");
  });
}

async function refresh() {
  if (state.busy) { state.again = true; return; }  // one poll at a time; the newest filter wins
  state.busy = true;
  clearTimeout(state.timer);
  try {
    const query = "api/recent?limit=50&filter=" + encodeURIComponent(state.filter);
    const [stats, recent] = await Promise.all([getJson("api/stats"), getJson(query)]);
    drawStats(stats);
    drawRecent(recent);
    document.body.dataset.loaded = "true";
  } catch (error) {
    showProblem(error.message);
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    refresh();
    return;
  }
  state.timer = setTimeout(refresh, state.refreshMs);
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("input", (e) => {
    state.filter = e.target.value;
    clearTimeout(state.filterTimer);
    state.filterTimer = setTimeout(refresh, 250);  // not one request per key stroke
  });
  refresh();
});
