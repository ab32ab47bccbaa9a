// The support desk page: polls /desk/data and answers tickets through the staff endpoints.
// Every text that came from a customer or an agent goes into the page with textContent, never as
// HTML; only the server's SVG charts (drawn and escaped by desk_charts.py) are set as markup.
// Requests carry the session cookie (HttpOnly, set at login) and, for a change, the CSRF token
// from the page's <meta> tag: see desk_auth.py.
"use strict";
const POLL_MS = 5000;
const LABELS = {answer: "answered", clarify: "clarified", decline: "declined", handoff: "handed off",
                unavailable: "unavailable"};
const COLOURS = {answer: "#1f5fa8", clarify: "#a85300", decline: "#6a3d9a", handoff: "#b3261e",
                 unavailable: "#4d4d4d"};
const SPEAKERS = {user: "Customer", bot: "Bot", agent: "Agent"};
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function percent(share) { return (100 * share).toFixed(share && share < 0.1 ? 1 : 0) + "%"; }

function renderTiles(data) {
  const tiles = $("tiles");
  tiles.replaceChildren(el("li", {}, el("strong", {text: String(data.decisions), id: "tile-total"}), "messages"));
  for (const decision of Object.keys(LABELS)) {
    const item = el("li", {id: "tile-" + decision, "data-count": String(data.counts[decision]),
                           style: "--c: " + COLOURS[decision]},
                    el("strong", {text: percent(data.shares[decision])}),
                    `${LABELS[decision]} (${data.counts[decision]})`);
    tiles.append(item);
  }
}

function renderSharesTable(series) {
  const table = $("shares-table");
  const caption = table.querySelector("caption");
  const head = el("tr", {}, el("th", {scope: "col", text: "from (UTC)"}), el("th", {scope: "col", text: "messages"}),
                  ...Object.values(LABELS).map((label) => el("th", {scope: "col", text: label})));
  const rows = series.filter((bucket) => bucket.total).map((bucket) => el("tr", {},
    el("th", {scope: "row", text: bucket.start.slice(0, 16).replace("T", " ")}), el("td", {text: String(bucket.total)}),
    ...Object.keys(LABELS).map((d) => el("td", {text: String(bucket.counts[d])}))));
  table.replaceChildren(caption, el("thead", {}, head), el("tbody", {}, ...rows));
}

function renderLatency(latency) {
  const table = $("latency-table");
  const caption = table.querySelector("caption");
  const rows = [latency.summary.all, ...latency.summary.actions].filter(Boolean);
  const ms = (value) => (value === null ? "–" : value + " ms");
  table.replaceChildren(caption,
    el("thead", {}, el("tr", {}, ...["action (since start)", "calls", "mean", "p50", "p95"].map(
      (text) => el("th", {scope: "col", text})))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, el("th", {scope: "row", text: row.action}),
      el("td", {text: String(row.calls)}), el("td", {text: ms(row.mean_ms)}), el("td", {text: ms(row.p50_ms)}),
      el("td", {text: ms(row.p95_ms)})))));
}

function transcriptItems(transcript) {
  return transcript.map((turn) => el("li", {class: turn.speaker},
    el("span", {class: "speaker", text: (SPEAKERS[turn.speaker] || "?") + ": "}), turn.text));
}

async function staffPost(path, body) {
  const response = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body || {})});
  const answer = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (response.status === 401) location.assign("/desk/login");
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function ticketCard(ticket) {
  const id = ticket.number;
  const transcript = el("ol", {class: "transcript", "aria-label": `Conversation of ticket ${id}`, tabindex: "0"});
  const result = el("p", {class: "result", role: "status"});
  const reply = el("textarea", {id: `reply-${id}`, name: "text", maxlength: "2000", required: ""});
  const send = el("button", {type: "submit", text: "Send reply"});
  const latest = el("button", {type: "button", class: "secondary", text: "Show latest messages"});
  const close = el("button", {type: "button", class: "secondary", text: "Close ticket"});
  const form = el("form", {class: "reply"}, el("label", {for: `reply-${id}`, text: `Reply to ${id}`}), reply,
                  el("div", {class: "actions"}, send, latest, close), result);
  const card = el("article", {id: `ticket-${id}`, "aria-labelledby": `ticket-${id}-h`},
                  el("h3", {id: `ticket-${id}-h`, text: `Ticket ${id}`}), el("p", {class: "meta"}), transcript, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!reply.value.trim()) return;
    send.disabled = true;
    try {
      const answer = await staffPost(`/tickets/${id}/reply`, {text: reply.value});
      reply.value = "";
      transcript.replaceChildren(...transcriptItems(answer.ticket.transcript.slice(-30)));
      transcript.scrollTop = transcript.scrollHeight;
      result.textContent = answer.pushed ? "Sent: the customer sees it now."
        : `Kept in the conversation: the customer's ${answer.channel} channel cannot show it now.`;
    } catch (error) {
      result.textContent = "Not sent: " + error.message;
    } finally {
      send.disabled = false;
    }
  });
  latest.addEventListener("click", async () => {
    const response = await fetch(`/tickets/${id}`, {credentials: "same-origin"});
    const answer = await response.json();
    if (!response.ok) { result.textContent = answer.error; return; }
    transcript.replaceChildren(...transcriptItems(answer.ticket.transcript.slice(-30)));
    result.textContent = "Up to date.";
  });
  close.addEventListener("click", async () => {
    close.disabled = true;
    try {
      await staffPost(`/tickets/${id}/close`);
      card.remove();
      $("announce").textContent = `Ticket ${id} closed: the bot is back in that conversation.`;
    } catch (error) {
      result.textContent = "Not closed: " + error.message;
      close.disabled = false;
    }
  });
  return card;
}

function renderTickets(data) {
  $("ticket-count").textContent = String(data.open_tickets);
  const list = $("ticket-list");
  const wanted = new Set(data.tickets.map((t) => `ticket-${t.number}`));
  for (const card of [...list.children]) if (!wanted.has(card.id)) card.remove();
  let previous = null;
  for (const ticket of data.tickets) {
    let card = document.getElementById(`ticket-${ticket.number}`);
    if (!card) card = ticketCard(ticket);
    // keep the card (and what is being typed in it); move it into place, update what the server knows
    if (previous ? previous.nextSibling !== card : list.firstChild !== card) {
      if (previous) previous.after(card); else list.prepend(card);
    }
    card.querySelector(".meta").textContent = `opened ${ticket.created_at.replace("T", " ")} · waiting ` +
      `${ticket.waiting_min} min · ${ticket.reason}`;
    const transcript = card.querySelector("ol.transcript");
    if (transcript.dataset.turns !== String(ticket.turns)) {
      transcript.dataset.turns = String(ticket.turns);
      transcript.replaceChildren(...transcriptItems(ticket.transcript));
    }
    previous = card;
  }
  if (!data.tickets.length) list.replaceChildren(el("p", {text: "No open tickets."}));
}

function renderUnanswered(unanswered) {
  const status = {grouping: "Grouping the unanswered questions by meaning…", off: "No embedder: grouping is off.",
                  updating: "Updating…", ready: ""}[unanswered.status] || "";
  $("unanswered-status").textContent = `${unanswered.texts} unanswered messages in the period. ${status}`;
  $("unanswered-list").replaceChildren(...unanswered.groups.map((group) => el("li", {},
    el("strong", {text: `${group.size} × `}), group.question,
    ...(group.examples.length ? [el("div", {class: "also", text: "also: " + group.examples.join(" · ")})] : []))));
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const response = await fetch(`/desk/data?period=${encodeURIComponent($("period").value)}`,
                                 {credentials: "same-origin"});
    if (response.status === 401) { location.assign("/desk/login"); return; }
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    renderTiles(data);
    for (const [id, svg] of [["shares-chart", data.charts.shares], ["latency-chart", data.charts.latency]]) {
      const chart = $(id);
      chart.innerHTML = svg;  // server-drawn SVG, text escaped there
      if (chart.dataset.pinned !== "false") chart.scrollLeft = chart.scrollWidth;
    }
    renderSharesTable(data.series);
    renderLatency(data.latency);
    renderTickets(data);
    renderUnanswered(data.unanswered);
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString()} · ${data.decisions} decisions since ` +
      `${data.since.slice(0, 16).replace("T", " ")} UTC`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("updated").textContent = "Could not update: " + error.message;
  } finally {
    timer = setTimeout(refresh, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // on a phone a chart scrolls sideways: it keeps its latest end in view unless someone scrolled back
  for (const chart of document.querySelectorAll(".chart")) {
    chart.addEventListener("scroll", () => {
      chart.dataset.pinned = String(chart.scrollLeft + chart.clientWidth >= chart.scrollWidth - 2);
    });
  }
  $("period").addEventListener("change", refresh);
  refresh();
});
