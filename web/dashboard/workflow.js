// One workflow: its record, its history (with who ran each attempt and every operator action)
// and the actions an operator may take on it.
import { getJson, enc } from "./api.js";
import { el, clock, time, table } from "./util.js";
import { poll } from "./live.js";
import { actOne, ACTIONS } from "./actions.js";
import { message_of } from "./ids.js";

export function mount(container, parts) {
  const id = parts.join("/");
  const status = el("p.live");
  const body = el("div");
  container.append(el("h2", {}, `Workflow ${id}`), status, body);
  const live = poll(async () => {
    const w = await getJson(`/v1/workflows/${enc(id)}`);
    const history = w.purged ? { events: w.milestones } :
      await getJson(`/v1/workflows/${enc(id)}/history?limit=1000`);
    const running = w.status === "RUNNING";
    const msg = message_of(id);
    const rows = history.events.map((e) => el("tr", { dataset: { kind: e.kind } },
      el("td", {}, e.seq), el("td", {}, clock(e.time_ms)), el("td", {}, e.kind), el("td", {}, e.name || ""),
      el("td", {}, e.attempt || ""), el("td", {}, e.node_id ? `node ${e.node_id} · term ${e.term}` : ""),
      el("td.err", {}, e.error_type ? `${e.error_type}: ${e.error_message || ""}` : (e.kind === "operator_action" ? e.payload : "")),
      el("td", {}, e.next_attempt_ms ? clock(e.next_attempt_ms) : "")));
    body.replaceChildren(
      el("p", {}, `${w.type} · `, el("span.badge", { id: "workflow-status", dataset: { state: w.state } }, `${w.status} · ${w.state}`),
        ` · created ${time(w.created_ms)} · ${w.history_length} events`,
        msg ? [" · message ", el("a", { href: `#/message/${enc(msg.conversation)}/${msg.seq}` }, `${msg.conversation} #${msg.seq}`)] : ""),
      w.error_type ? el("p.err", {}, `${w.error_type}: ${w.error_message}`) : "",
      el("p", {}, Object.entries(ACTIONS).map(([a, label]) => el("button", { type: "button", disabled: !running,
        dataset: { action: a }, onclick: async () => { await actOne(id, a); live.now(); } }, label))),
      table(["#", "time", "event", "name", "attempt", "ran by", "error / detail", "next retry"], rows, { id: "history" }));
  }, status);
  return () => live.stop();
}
