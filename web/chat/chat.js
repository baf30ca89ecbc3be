// Herald's web chat (docs/js-client.md, "The web chat"): a page built only on the JavaScript
// client module, served beside it at /chat/herald.js. Each tab is one device: its credentials
// live in the tab's sessionStorage (they survive a reload of the tab, not its closing), and the
// client keeps its change cursor and outbox in localStorage under the device's id.
import { HeraldClient, WebStorage } from "./herald.js";

// A typing indicator is sent at most this often while the user types, and cleared after this
// much silence; a received one is shown for this long unless renewed.
const kTypingResendMs = 2_000;
const kTypingIdleMs = 3_000;
const kTypingShownMs = 4_000;
// Messages fetched when a conversation is opened.
const kHistoryPage = 50;

const $ = (id) => document.getElementById(id);
const kCredentialsKey = "herald-chat:credentials";
const kSelectedKey = "herald-chat:selected";

let client = null;
let me = null;
let selected = sessionStorage.getItem(kSelectedKey);
const messages = new Map();   // conversation_id -> Map(seq -> Message)
const receipts = new Map();   // conversation_id -> Map(user_id -> seq read up to)
const typingUntil = new Map(); // conversation_id -> Map(user_id -> ms)
const readAsked = new Map();  // conversation_id -> seq asked in a `read`
let typingSentMs = 0;
let typingTimer = null;

function receiptsKey() { return `herald-chat:${me.user}:${me.device}:receipts`; }

function loadReceipts() {
  const stored = JSON.parse(localStorage.getItem(receiptsKey()) || "{}");
  for (const [conv, users] of Object.entries(stored)) receipts.set(conv, new Map(Object.entries(users)));
}

function saveReceipts() {
  const out = {};
  for (const [conv, users] of receipts) out[conv] = Object.fromEntries(users);
  localStorage.setItem(receiptsKey(), JSON.stringify(out));
}

function chatTitle(chat) {
  if (!chat) return "";
  if (chat.kind === "direct" || chat.conversation_id.startsWith("direct:")) {
    const others = chat.conversation_id.split(":").slice(1).filter((u) => u !== me.user);
    return others[0] ?? chat.conversation_id;
  }
  return chat.title || chat.conversation_id;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// --- rendering ----------------------------------------------------------------------------------

function renderChats() {
  const list = $("chat-list");
  list.replaceChildren();
  for (const chat of client.chatList()) {
    const other = chat.conversation_id.startsWith("direct:") ? chatTitle(chat) : null;
    const dot = el("span", { className: "presence",
      dataset: { online: String(Boolean(other && client.presence(other)?.online)) } });
    const item = el("li", { className: "chat", "aria-selected": String(chat.conversation_id === selected),
      dataset: { conversation: chat.conversation_id } },
    el("span", { className: "title" }, ...(other ? [dot] : []), chatTitle(chat)),
    el("span", { className: "unread", dataset: { count: String(chat.unread) } }, String(chat.unread)),
    el("span", { className: "preview" }, chat.preview || ""));
    item.addEventListener("click", () => select(chat.conversation_id));
    list.append(item);
  }
  $("unread-total").textContent = String(client.unreadTotal());
  document.title = client.unreadTotal() ? `(${client.unreadTotal()}) Herald chat` : "Herald chat";
}

// The tick of one of my messages: pending (in the outbox), sent (stored, seq known), delivered
// (a device of another member acknowledged it: the client's delivered mark covers it) or read (a
// member's read receipt covers it).
function tickOf(conv, seq) {
  if (seq === undefined) return { status: "pending", text: "🕓" };
  const readers = [...(receipts.get(conv) ?? new Map())].filter(([user, upTo]) =>
    user !== me.user && Number(upTo) >= seq);
  if (readers.length) return { status: "read", text: "✓✓", title: `read by ${readers.map(([u]) => u).join(", ")}` };
  if (client.deliveredUpTo(conv) >= seq) {
    return { status: "delivered", text: "✓✓", title: "delivered to another member's device" };
  }
  return { status: "sent", text: "✓", title: "stored by the server" };
}

function messageItem(conv, message) {
  const mine = message.sender === me.user;
  const time = new Date(message.time_ms ?? Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const meta = el("div", { className: "meta" }, time);
  if (mine) {
    const tick = tickOf(conv, message.seq);
    meta.append(el("span", { className: "ticks", title: tick.title ?? "waiting to be sent",
      dataset: { status: tick.status } }, tick.text));
  }
  return el("li", { className: `message${mine ? " mine" : ""}${message.deleted ? " deleted" : ""}`,
    dataset: { seq: String(message.seq ?? ""), cmid: message.client_message_id ?? "" } },
  ...(mine ? [] : [el("div", { className: "sender" }, message.sender)]),
  el("div", { className: "body" }, message.deleted ? "message deleted" : message.body), meta);
}

function renderMessages() {
  const list = $("messages");
  if (!selected) { list.replaceChildren(); return; }
  const chat = client.chatList().find((c) => c.conversation_id === selected);
  $("conversation-title").textContent = chat ? chatTitle(chat) : selected;
  const stored = [...(messages.get(selected) ?? new Map()).values()].sort((a, b) => a.seq - b.seq);
  const known = new Set(stored.map((m) => m.client_message_id));
  const pending = client.pendingSends().filter((e) => e.conversation_id === selected &&
    !known.has(e.client_message_id)).map((e) => ({ body: e.body, sender: me.user,
    client_message_id: e.client_message_id, time_ms: e.queued_ms }));
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...[...stored, ...pending].map((m) => messageItem(selected, m)));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderTyping() {
  const now = Date.now();
  const who = [...(typingUntil.get(selected) ?? new Map())].filter(([, until]) => until > now)
    .map(([user]) => user);
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

function showError(error) {
  $("error").textContent = error ? String(error.message ?? error) : "";
}

// --- state --------------------------------------------------------------------------------------

function storeMessage(message) {
  if (!messages.has(message.conversation_id)) messages.set(message.conversation_id, new Map());
  messages.get(message.conversation_id).set(message.seq, message);
}

// Marks the open conversation read while this tab is visible; the user's other devices follow
// through the `read_cursor` change, the senders through their `read_receipt`.
function markSelectedRead() {
  if (!selected || document.visibilityState !== "visible" || client.state !== "online") return;
  const chat = client.chatList().find((c) => c.conversation_id === selected);
  if (!chat || chat.last_seq <= chat.read_cursor) return;
  if ((readAsked.get(selected) ?? 0) >= chat.last_seq) return;
  readAsked.set(selected, chat.last_seq);
  const conv = selected;
  client.markRead(conv, chat.last_seq).catch((error) => {
    readAsked.delete(conv);
    if (error.code !== "disconnected") showError(error);
  });
}

async function loadHistory(conv) {
  const answer = await client.history(conv, { limit: kHistoryPage });
  for (const message of answer.messages) storeMessage(message);
  if (conv === selected) renderMessages();
}

function select(conv) {
  selected = conv;
  sessionStorage.setItem(kSelectedKey, conv);
  $("composer").body.disabled = false;
  $("composer").querySelector("button").disabled = false;
  renderChats();
  renderMessages();
  renderTyping();
  loadHistory(conv).then(markSelectedRead, showError);
}

async function refresh() {
  await client.loadChats();
  renderChats();
  if (selected) select(selected);
}

// --- wiring -------------------------------------------------------------------------------------

function wire() {
  client.on("state", ({ state }) => {
    $("state").textContent = state;
    $("state").dataset.state = state;
  });
  client.on("connected", () => refresh().catch(showError));
  client.on("resync", () => { messages.clear(); });
  client.on("chat", () => { renderChats(); markSelectedRead(); });
  client.on("message", ({ message }) => {
    if (!message) return;
    storeMessage(message);
    if (message.conversation_id === selected) { renderMessages(); markSelectedRead(); }
  });
  client.on("outbox", ({ entry, error }) => {
    if (error && error.code !== "canceled") showError(error);
    if (entry.conversation_id === selected) renderMessages();
  });
  client.on("receipt", ({ conversation_id: conv, user_id: user, seq }) => {
    if (!receipts.has(conv)) receipts.set(conv, new Map());
    const users = receipts.get(conv);
    if (Number(users.get(user) ?? 0) < seq) users.set(user, seq);
    saveReceipts();
    if (conv === selected) renderMessages();
  });
  client.on("delivered", ({ conversation_id: conv }) => {
    if (conv === selected) renderMessages();
  });
  client.on("typing", ({ conversation_id: conv, user_id: user, active }) => {
    if (!typingUntil.has(conv)) typingUntil.set(conv, new Map());
    typingUntil.get(conv).set(user, active ? Date.now() + kTypingShownMs : 0);
    renderTyping();
    setTimeout(renderTyping, kTypingShownMs + 50);
  });
  client.on("presence", () => renderChats());
  // The session ended for good: say why, since the client will not reconnect by itself.
  client.on("removed", () => showError("This device was removed: sign in again to use Herald here."));
  client.on("revoked", () => showError("Your access was revoked by an operator."));
  client.on("replaced", () => showError(
    "A newer session of this device took over: reload this page to reconnect here."));
  document.addEventListener("visibilitychange", markSelectedRead);

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = event.target.body;
    const body = input.value.trim();
    if (!body || !selected) return;
    input.value = "";
    client.send(selected, body).catch(showError);
    renderMessages();
    clearTimeout(typingTimer);
    typingSentMs = 0;
    client.typing(selected, false).catch(() => {});
  });
  $("composer").body.addEventListener("input", () => {
    if (!selected || client.state !== "online") return;
    const conv = selected;
    if (Date.now() - typingSentMs > kTypingResendMs) {
      typingSentMs = Date.now();
      client.typing(conv, true).catch(() => {});
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typingSentMs = 0; client.typing(conv, false).catch(() => {}); },
      kTypingIdleMs);
  });
  $("new-chat").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const members = form.members.value.split(",").map((s) => s.trim()).filter(Boolean);
    const title = form.title.value.trim();
    try {
      const conversation = members.length === 1 && !title ? await client.createDirect(members[0])
        : await client.createGroup(members, title);
      form.reset();
      await client.loadChats();
      select(conversation.conversation_id);
    } catch (error) {
      showError(error);
    }
  });
}

async function start(credentials) {
  me = credentials;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("who").textContent = `${me.user} · ${me.device}`;
  loadReceipts();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  client = new HeraldClient({
    url: `${scheme}://${location.host}/v1/ws`, userId: me.user, deviceId: me.device,
    ...(me.token ? { token: me.token } : { jwt: me.jwt }), storage: new WebStorage(),
  });
  wire();
  window.heraldClient = client;  // for the console, and for tests
  try {
    await client.connect();
  } catch (error) {
    sessionStorage.removeItem(kCredentialsKey);
    $("signin").hidden = false;
    $("app").hidden = true;
    $("signin-error").textContent = String(error.message ?? error);
  }
}

function credentialsFromHash() {
  if (!location.hash) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const user = params.get("user");
  const device = params.get("device");
  if (!user || !device || !(params.get("token") || params.get("jwt"))) return null;
  // The fragment never reaches the server; drop it from the address bar and the history too.
  history.replaceState(null, "", location.pathname);
  return { user, device, token: params.get("token") || "", jwt: params.get("jwt") || "" };
}

function main() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const credentials = { user: form.user.value.trim(), device: form.device.value.trim(),
      token: form.token.value, jwt: form.jwt.value };
    if (!credentials.token && !credentials.jwt) {
      $("signin-error").textContent = "a device secret or a sign-in token is needed";
      return;
    }
    sessionStorage.setItem(kCredentialsKey, JSON.stringify(credentials));
    start(credentials);
  });
  $("signout").addEventListener("click", () => {
    client?.close();
    sessionStorage.removeItem(kCredentialsKey);
    sessionStorage.removeItem(kSelectedKey);
    location.reload();
  });
  const fromHash = credentialsFromHash();
  if (fromHash) sessionStorage.setItem(kCredentialsKey, JSON.stringify(fromHash));
  const stored = sessionStorage.getItem(kCredentialsKey);
  if (stored) start(JSON.parse(stored));
}

main();
