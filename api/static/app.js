// hyperfollow web page: leaderboard (REST), live events (WebSocket, resumes with ?since=), trader detail.
// Plain DOM, no build step. Every value from the server goes through textContent, never innerHTML.
"use strict";

const PAGE = 50;
const FEED_MAX = 200;
const board = { sort_by: "win_rate", order: "desc", offset: 0 };
const feed = { socket: null, lastStreamId: null, retry: 500, closedByUs: false };

const $ = (selector) => document.querySelector(selector);
const api = (path) => new URL(path, document.baseURI).toString();

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", notation: "compact",
                                              maximumFractionDigits: 2 });
const num = new Intl.NumberFormat("en-US", { maximumFractionDigits: 4 });
const fmtUsd = (v) => (v === null || v === undefined ? "–" : usd.format(v));
const fmtPct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const fmtNum = (v) => (v === null || v === undefined ? "–" : num.format(v));
const shortAddr = (a) => (a ? `${a.slice(0, 6)}…${a.slice(-4)}` : "");
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");

async function getJson(path) {
  const response = await fetch(api(path), { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || body.detail || `HTTP ${response.status}`);
  return body;
}

function showMessage(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

// --- leaderboard ------------------------------------------------------------------------------------------
function boardQuery() {
  const form = new FormData($("#board-filters"));
  const params = new URLSearchParams({
    sort_by: board.sort_by, order: board.order, limit: PAGE, offset: board.offset,
    window: form.get("window") || "all",
    include_low_sample: form.get("include_low_sample") ? "true" : "false",
  });
  const minTrades = parseInt(form.get("min_trades"), 10);
  const minVolume = parseFloat(form.get("min_volume"));
  if (minTrades > 0) params.set("min_trades", minTrades);
  if (minVolume > 0) params.set("min_volume", minVolume);
  return params;
}

async function loadBoard() {
  const message = $("#board-message");
  let rows;
  try {
    rows = await getJson(`api/v1/leaderboard?${boardQuery()}`);
  } catch (error) {
    showMessage(message, `Leaderboard unavailable: ${error.message}`);
    return;
  }
  showMessage(message, rows.length || board.offset ? "" : "No traders ranked yet for this window and filters.");
  const body = $("#leaderboard tbody");
  body.replaceChildren(...rows.map(boardRow));
  $("#page-info").textContent = rows.length ? `${board.offset + 1}–${board.offset + rows.length}` : "";
  $("#prev").disabled = board.offset === 0;
  $("#next").disabled = rows.length < PAGE;
  for (const th of document.querySelectorAll("#leaderboard th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === board.sort_by);
    th.dataset.order = th.dataset.sort === board.sort_by ? board.order : "";
  }
}

function boardRow(row) {
  const tr = el("tr");
  tr.dataset.trader = row.trader_address;
  if (row.low_sample) tr.classList.add("low-sample");
  const trader = el("td", shortAddr(row.trader_address), "addr");
  trader.title = row.trader_address;
  if (row.low_sample) trader.append(el("span", `${row.trade_count} trades`, "badge"));
  tr.append(el("td", row.rank), trader, el("td", fmtPct(row.win_rate)), el("td", fmtUsd(row.total_volume_usd)),
            el("td", fmtUsd(row.realized_pnl_usd), row.realized_pnl_usd < 0 ? "neg" : "pos"),
            el("td", fmtPct(row.roi)), el("td", fmtUsd(row.max_profit_usd)), el("td", fmtUsd(row.max_loss_usd)),
            el("td", fmtPct(row.max_drawdown)), el("td", fmtNum(row.avg_risk_ratio)),
            el("td", `${row.account_age_days} d`), el("td", row.trade_count));
  tr.addEventListener("click", () => openTrader(row.trader_address));
  return tr;
}

function setupBoard() {
  for (const th of document.querySelectorAll("#leaderboard th[data-sort]")) {
    th.addEventListener("click", () => {
      if (board.sort_by === th.dataset.sort) board.order = board.order === "desc" ? "asc" : "desc";
      else Object.assign(board, { sort_by: th.dataset.sort, order: "desc" });
      board.offset = 0;
      loadBoard();
    });
  }
  $("#board-filters").addEventListener("change", () => { board.offset = 0; loadBoard(); });
  $("#board-filters").addEventListener("submit", (event) => event.preventDefault());
  $("#prev").addEventListener("click", () => { board.offset = Math.max(0, board.offset - PAGE); loadBoard(); });
  $("#next").addEventListener("click", () => { board.offset += PAGE; loadBoard(); });
}

// --- live feed ----------------------------------------------------------------------------------------------
function feedUrl() {
  const url = new URL("ws/v1/updates", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const form = new FormData($("#feed-filters"));
  const coin = (form.get("coin") || "").trim().toUpperCase();
  if (coin) url.searchParams.set("coin", coin);
  if (form.get("event_type")) url.searchParams.set("event_type", form.get("event_type"));
  if (feed.lastStreamId) url.searchParams.set("since", feed.lastStreamId);
  return url.toString();
}

function setFeedStatus(text, live) {
  const pill = $("#feed-status");
  pill.textContent = text;
  pill.classList.toggle("live", Boolean(live));
}

function connectFeed() {
  feed.closedByUs = false;
  const socket = new WebSocket(feedUrl());
  feed.socket = socket;
  socket.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    if (message.type === "connection") {
      setFeedStatus("live", true);
      showMessage($("#feed-message"), "");
      feed.retry = 500;
    } else if (message.type === "trade_event") {
      addEvent(message.data);
    } else if (message.type === "error") {
      showMessage($("#feed-message"), message.message);
    }
  });
  socket.addEventListener("close", () => {
    if (feed.socket !== socket || feed.closedByUs) return;
    setFeedStatus("reconnecting");
    setTimeout(connectFeed, feed.retry);
    feed.retry = Math.min(feed.retry * 2, 10000);
  });
}

function reconnectFeed() {
  // new filters: start from now (events before do not match the old filters' replay anyway)
  feed.closedByUs = true;
  feed.lastStreamId = null;
  if (feed.socket) feed.socket.close();
  $("#events").replaceChildren();
  connectFeed();
}

function addEvent(data) {
  if (data.stream_id) feed.lastStreamId = data.stream_id;
  const details = data.details || {};
  const li = el("li", null, `event ${data.event_type}`);
  li.dataset.streamId = data.stream_id || "";
  li.dataset.trader = data.trader_address;
  const kind = (data.event_type || "").replace("position_", "");
  const size = details.current_size;
  li.append(el("time", fmtTime(data.timestamp)), el("span", kind, "kind"), el("span", details.coin, "coin"),
            el("span", `${details.size_change > 0 ? "+" : ""}${fmtNum(details.size_change)} → ${fmtNum(size)}`, "size"),
            el("span", shortAddr(data.trader_address), "addr"));
  li.title = data.trader_address;
  li.addEventListener("click", () => openTrader(data.trader_address));
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}

// --- trader detail ------------------------------------------------------------------------------------------
async function openTrader(address) {
  const section = $("#detail");
  section.hidden = false;
  $("#detail-title").textContent = address;
  $("#detail-summary").textContent = "loading…";
  let detail, events;
  try {
    [detail, events] = await Promise.all([getJson(`traders/${address}`), getJson(`traders/${address}/events?limit=50`)]);
  } catch (error) {
    $("#detail-summary").textContent = `unavailable: ${error.message}`;
    return;
  }
  const t = detail.trader;
  $("#detail-summary").textContent = [
    `id ${t.id}`, t.is_active ? "active" : "inactive",
    `account ${fmtUsd(detail.account_value)}`, `notional ${fmtUsd(detail.total_notional)}`,
    `snapshot ${detail.snapshot_at ? new Date(detail.snapshot_at).toLocaleString() : "never"}`,
  ].join(" · ");
  $("#positions tbody").replaceChildren(...(detail.positions.length ? detail.positions.map((p) => {
    const tr = el("tr");
    tr.append(el("td", p.coin), el("td", p.side, p.side === "LONG" ? "pos" : "neg"), el("td", fmtNum(p.size)),
              el("td", fmtNum(p.entry_price)), el("td", fmtUsd(p.position_value)),
              el("td", fmtUsd(p.unrealized_pnl), p.unrealized_pnl < 0 ? "neg" : "pos"),
              el("td", fmtPct(p.return_on_equity)),
              el("td", p.leverage ? `${p.leverage}× ${p.leverage_type || ""}` : "–"), el("td", fmtNum(p.liquidation_price)));
    return tr;
  }) : [emptyRow(9, "no open positions")]));
  $("#metrics tbody").replaceChildren(...(detail.metrics.length ? detail.metrics.map((m) => {
    const tr = el("tr");
    tr.append(el("td", m.window), el("td", fmtPct(m.win_rate)), el("td", fmtUsd(m.total_volume_usd)),
              el("td", fmtUsd(m.realized_pnl_usd)), el("td", fmtPct(m.roi)), el("td", fmtPct(m.max_drawdown)),
              el("td", m.low_sample ? `${m.trade_count} (low sample)` : m.trade_count));
    return tr;
  }) : [emptyRow(7, "not computed yet")]));
  $("#trader-events tbody").replaceChildren(...(events.length ? events.map((e) => {
    const tr = el("tr");
    tr.append(el("td", new Date(e.timestamp).toLocaleString()), el("td", e.event_type.replace("position_", "")),
              el("td", e.coin), el("td", fmtNum(e.details.current_size)), el("td", fmtNum(e.details.size_change)));
    return tr;
  }) : [emptyRow(5, "no events")]));
  section.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function emptyRow(span, text) {
  const tr = el("tr");
  const td = el("td", text, "empty");
  td.colSpan = span;
  tr.append(td);
  return tr;
}

// --- stats ----------------------------------------------------------------------------------------------------
async function loadStats() {
  try {
    const stats = await getJson("api/v1/stats");
    $("#stat-traders").textContent = stats.database.total_traders.toLocaleString();
    $("#stat-active").textContent = stats.database.active_traders.toLocaleString();
    $("#stat-events").textContent = stats.database.total_trade_events.toLocaleString();
    $("#stat-clients").textContent = stats.websocket.active_connections.toLocaleString();
  } catch { /* the header keeps its last figures */ }
}

document.addEventListener("DOMContentLoaded", () => {
  setupBoard();
  $("#feed-filters").addEventListener("change", reconnectFeed);
  $("#feed-filters").addEventListener("submit", (event) => event.preventDefault());
  $("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; });
  loadBoard();
  loadStats();
  connectFeed();
  setInterval(loadStats, 15000);
  setInterval(loadBoard, 60000);
});
