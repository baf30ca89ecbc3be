// Workflows: counts by type and state, and the lists that need attention (stuck, retrying,
// escalated, failed, sagas in compensation_failed), with actions one at a time or as a batch.
import { getJson, enc } from "./api.js";
import { el, clock, duration, table } from "./util.js";
import { poll } from "./live.js";
import { actOne, actBatch, ACTIONS } from "./actions.js";

// The actions offered on each list.
const LIST_ACTIONS = {
  stuck: ["retry_now", "escalate_now", "cancel"],
  retrying: ["retry_now", "cancel"],
  escalated: ["cancel"],
  failed: [],
  compensation_failed: ["saga_retry", "saga_resolve"],
};
const LIST_TITLES = {
  stuck: "Stuck", retrying: "Retrying", escalated: "Escalated", failed: "Failed",
  compensation_failed: "Sagas in compensation_failed",
};

function countsTable(counts) {
  const types = [...new Set(counts.map((c) => c.type))].sort();
  const rows = types.map((type) => el("tr", {}, el("th", {}, type),
    el("td", {}, counts.filter((c) => c.type === type).map((c) =>
      el("span.count", { dataset: { type, state: c.state } }, `${c.state} `, el("b", {}, c.count), " ")))));
  return table(["type", "workflows by state"], rows, { id: "counts" });
}

function listSection(name, items, nowMs, selected, refresh) {
  const actions = LIST_ACTIONS[name];
  const rows = items.map((item) => {
    const box = el("input", { type: "checkbox", checked: selected.has(item.id), dataset: { id: item.id },
      onchange: (e) => (e.target.checked ? selected.add(item.id) : selected.delete(item.id)) });
    return el("tr", { dataset: { workflow: item.id } },
      el("td", {}, actions.length ? box : ""),
      el("td", {}, el("a", { href: `#/workflow/${enc(item.id)}` }, item.id)),
      el("td", {}, item.type), el("td", {}, item.state),
      el("td", {}, `${duration(nowMs - item.updated_ms)} ago`),
      el("td", {}, item.activity_type ? `${item.activity_type} attempt ${item.attempt}` : ""),
      el("td.err", {}, item.error_type ? `${item.error_type}: ${item.error_message}` : ""),
      el("td", {}, item.next_attempt_ms ? clock(item.next_attempt_ms) : ""),
      el("td", {}, actions.map((a) => el("button", { type: "button", dataset: { action: a },
        onclick: async () => { await actOne(item.id, a); refresh(); } }, ACTIONS[a]))));
  });
  const batch = actions.map((a) => el("button", { type: "button", dataset: { batch: a },
    onclick: async () => {
      const ids = items.map((i) => i.id).filter((id) => selected.has(id));
      const answer = await actBatch(ids, a);
      if (answer) selected.clear();
      refresh();
    } }, `${ACTIONS[a]} selected`));
  return el("section.list", { id: `list-${name}` },
    el("h3", {}, `${LIST_TITLES[name]} (${items.length})`, " ", batch),
    items.length ? table(["", "workflow", "type", "state", "last change", "activity", "error", "next retry", "actions"], rows)
      : el("p.empty", {}, "None."));
}

export function mount(container, _parts, query) {
  const stuckInput = el("input", { id: "stuck-after", type: "number", min: 1,
    value: query.get("stuck") || "300" });
  const status = el("p.live");
  const body = el("div");
  const selected = new Set();
  container.append(el("h2", {}, "Workflows"),
    el("label", {}, "Stuck after (seconds without progress) ", stuckInput), status, body);
  const live = poll(async () => {
    const stuckMs = Math.max(1, Number(stuckInput.value) || 300) * 1000;
    const view = await getJson(`/v1/overview/workflows?stuck_after_ms=${stuckMs}&limit=100`);
    body.replaceChildren(countsTable(view.counts),
      view.truncated ? el("p.error", {}, `Only the first ${view.scanned} workflows were read.`) : "",
      el("div", {}, Object.keys(LIST_ACTIONS).map((name) => listSection(name, view[name], view.now_ms, selected, () => live.now()))));
  }, status);
  stuckInput.addEventListener("change", () => live.now());
  return () => live.stop();
}
