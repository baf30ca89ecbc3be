// Search: one box for a message (conversation + seq), a conversation, a user, a device or a
// workflow id (GET /v1/admin/search).
import { getJson, enc } from "./api.js";
import { el, time, errorBox } from "./util.js";
import { credentialRefused } from "./app.js";

function messageLink(conversation, seq, label) {
  return el("a", { href: `#/message/${enc(conversation)}/${seq}` }, label || `${conversation} #${seq}`);
}

function card(kind, title, ...body) {
  return el("article.card", { dataset: { kind } }, el("h3", {}, el("span.kind", {}, kind), " ", title), ...body);
}

function render(result) {
  switch (result.kind) {
    case "message": {
      const m = result.message;
      return card("message", messageLink(result.conversation_id, result.seq),
        el("p", {}, `from ${m.sender || "(system)"} at ${time(m.time_ms)}`));
    }
    case "conversation": {
      const c = result.conversation;
      return card("conversation", c.conversation_id,
        el("p", {}, `${c.kind}, ${c.members.length} members, last seq ${c.last_seq}`),
        el("p.links", {}, "messages: ", result.recent_seqs.map((seq) =>
          [messageLink(c.conversation_id, seq, `#${seq}`), " "])));
    }
    case "user": {
      const u = result.user;
      return card("user", u.user_id,
        el("p", {}, `${u.display_name || ""} ${u.email ? "<" + u.email + ">" : ""}`),
        el("p", {}, "devices: ", result.devices.map((d) =>
          [el("a", { href: `#/search?q=${enc(d.device_id)}` }, d.device_id), ` (${d.platform}${d.push_provider ? ", " + d.push_provider : ""}) `])),
        el("ul", {}, result.conversations.map((c) => el("li", {},
          el("a", { href: `#/search?q=${enc(c.conversation_id)}` }, c.conversation_id),
          c.last_seq ? [" · last ", messageLink(c.conversation_id, c.last_seq, `#${c.last_seq}`)] : ""))));
    }
    case "device": {
      const d = result.device;
      return card("device", d.device_id,
        el("p", {}, "owner ", el("a", { href: `#/search?q=${enc(result.user_id)}` }, result.user_id),
          `, ${d.platform}, push ${d.push_provider || "none"}${d.push_target_invalid ? " (invalid: " + d.push_invalid_reason + ")" : ""}`));
    }
    case "workflow":
      return card("workflow", el("a", { href: `#/workflow/${enc(result.id)}` }, result.id),
        el("p", {}, `${result.type} · ${result.status} · ${result.state}${result.purged ? " · purged" : ""}`),
        result.message ? el("p", {}, "message ", messageLink(result.message.conversation_id, result.message.seq)) : "");
    default:
      return card(result.kind, JSON.stringify(result));
  }
}

export function mount(container, _parts, query) {
  const q = query.get("q") || "";
  const input = el("input", { id: "search-box", type: "search", value: q, autofocus: true,
    placeholder: "message (conversation seq), conversation, user, device or workflow id" });
  const results = el("div.results", { id: "results" });
  const form = el("form.search", { onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/search?q=${enc(input.value.trim())}`;
  } }, input, el("button", { type: "submit" }, "Search"));
  container.append(el("h2", {}, "Search"), form, results);
  if (!q) return null;
  getJson(`/v1/admin/search?q=${enc(q)}`).then((answer) => {
    if (answer.results.length === 0) {
      results.replaceChildren(el("p.empty", {}, `Nothing is called "${q}".`));
      return;
    }
    // A single message goes straight to its timeline.
    if (answer.results.length === 1 && answer.results[0].kind === "message") {
      const r = answer.results[0];
      location.replace(`#/message/${enc(r.conversation_id)}/${r.seq}`);
      return;
    }
    results.replaceChildren(...answer.results.map(render));
  }).catch((error) => {
    if (!credentialRefused(error)) results.replaceChildren(errorBox(error));
  });
  return null;
}
