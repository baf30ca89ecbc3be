// A message's timeline (GET /v1/admin/conversations/{id}/messages/{seq}): one lane per recipient
// workflow, per recipient device and per provider; every state change and every activity attempt
// (time, node and term that ran it, attempt number, outcome, provider error, next retry); idle
// gaps collapsed. Below it, the read-sync saga of each read with its steps and compensations.
import { getJson, enc } from "./api.js";
import { el, clock, time, duration, table } from "./util.js";
import { poll } from "./live.js";
import { actOne } from "./actions.js";

// Gaps longer than this between two consecutive events are collapsed into one row.
export const IDLE_GAP_MS = 3000;

const ATTEMPT_KINDS = new Set(["activity_completed", "activity_retry_scheduled", "activity_failed"]);
const READ_STEPS = {
  "messaging.read_marker.set": "record_marker",
  "messaging.read_marker.restore": "record_marker (compensation)",
  "messaging.read_cursor.advance": "advance_cursor",
  "messaging.read_cursor.keep": "advance_cursor (compensation)",
  "messaging.read_receipts.publish": "publish_receipts",
  "messaging.read_receipts.keep": "publish_receipts (compensation)",
};

function outcomeOf(kind) {
  if (kind === "activity_completed") return "ok";
  if (kind === "activity_retry_scheduled") return "retrying";
  return "failed";
}

function ranBy(e) {
  return e.node_id ? `node ${e.node_id} · term ${e.term}` : "node ?";
}

// Collects the lanes and their events: [{lane, time, seq, node}].
function collect(data) {
  const lanes = [];
  const laneIndex = new Map();
  const cells = [];
  const lane = (key, label, kind) => {
    if (!laneIndex.has(key)) {
      laneIndex.set(key, lanes.length);
      lanes.push({ key, label, kind });
    }
    return key;
  };
  const add = (key, timeMs, order, node, cls) => cells.push({ lane: key, time: timeMs, order, node, cls });
  for (const r of data.recipients) {
    const wf = lane(`wf:${r.user_id}`, `${r.user_id} · delivery`, "workflow");
    for (const d of r.devices || []) lane(`dev:${r.user_id}:${d.device_id}`, `${r.user_id} · ${d.device_id}`, "device");
    for (const e of r.history || []) {
      if (ATTEMPT_KINDS.has(e.kind)) {
        const attempts = e.attempts && e.attempts.length ? e.attempts : [{ provider: e.name, status: outcomeOf(e.kind) }];
        for (const a of attempts) {
          const key = lane(`prov:${a.provider}`, `provider · ${a.provider}`, "provider");
          add(key, e.time_ms, e.seq, el("div.attempt", { dataset: { outcome: outcomeOf(e.kind) } },
            el("b", {}, `attempt ${e.attempt || "?"}`), ` ${a.status} `,
            a.device_id ? `→ ${a.device_id} ` : "",
            a.latency_ms !== undefined ? `(${a.latency_ms} ms) ` : "",
            el("div.meta", {}, ranBy(e)),
            a.error_type || e.error_type ? el("div.err", {}, `${a.error_type || e.error_type}: ${a.reason || e.error_message || ""}`) : "",
            e.next_attempt_ms ? el("div.next", {}, `next retry ${clock(e.next_attempt_ms)}`) : ""), outcomeOf(e.kind));
          if (a.device_id && a.status === "accepted") {
            add(`dev:${r.user_id}:${a.device_id}`, e.time_ms, e.seq, el("div", {}, `pushed via ${a.provider}`), "pushed");
          }
        }
      } else if (e.kind === "started") {
        add(wf, e.time_ms, e.seq, el("div.state", {}, "initiated"), "state");
      } else if (e.kind === "state_changed") {
        add(wf, e.time_ms, e.seq, el("div.state", {}, `→ ${e.name}`), "state");
      } else if (!["activity_scheduled", "timer_started", "timer_canceled"].includes(e.kind)) {
        add(wf, e.time_ms, e.seq, el("div", {}, e.kind === e.name || !e.name ? e.kind : `${e.kind} ${e.name}`,
          e.error_type ? el("div.err", {}, e.error_type) : ""), e.kind === "escalated" ? "escalated" : "event");
      }
    }
    for (const d of r.devices || []) {
      const key = `dev:${r.user_id}:${d.device_id}`;
      if (d.delivered_ms) add(key, d.delivered_ms, 0, el("div.state", {}, "delivered"), "delivered");
      if (d.read_ms) add(key, d.read_ms, 0, el("div.state", {}, "read"), "read");
    }
  }
  cells.sort((a, b) => a.time - b.time || a.order - b.order);
  return { lanes, cells };
}

function lanesTable(data) {
  const { lanes, cells } = collect(data);
  const rows = [];
  let last = data.message.time_ms;
  rows.push(el("tr", {}, el("td.time", {}, clock(last)),
    el("td.origin", { colspan: lanes.length }, `stored · seq ${data.message.seq} from ${data.message.sender || "(system)"}`)));
  for (const c of cells) {
    if (c.time - last > IDLE_GAP_MS) {
      rows.push(el("tr.gap", {}, el("td", { colspan: lanes.length + 1 }, `⋯ ${duration(c.time - last)} idle ⋯`)));
    }
    last = Math.max(last, c.time);
    rows.push(el("tr", {}, el("td.time", {}, clock(c.time)),
      lanes.map((l) => el("td", { class: l.key === c.lane ? `cell ${c.cls}` : "" }, l.key === c.lane ? c.node : ""))));
  }
  return table(["time", ...lanes.map((l) => el("span", { class: `lane ${l.kind}`, dataset: { lane: l.key } }, l.label))],
    rows, { class: "timeline", id: "timeline" });
}

function recipientSummary(r, refresh) {
  const running = r.status === "running";
  const button = (action, label) => el("button", { type: "button", disabled: !running,
    dataset: { action, workflow: r.workflow_id },
    onclick: async () => { await actOne(r.workflow_id, action); refresh(); } }, label);
  return el("div.recipient", { dataset: { user: r.user_id } },
    el("b", {}, r.user_id), " ",
    el("a", { href: `#/workflow/${enc(r.workflow_id)}` }, r.workflow_id), " ",
    el("span.badge", { dataset: { state: r.state } }, `${r.state || "?"} · ${r.status || "?"}`),
    r.escalated ? el("span.badge.escalated", {}, r.emailed ? "escalated · emailed" : "escalated") : "",
    " ", button("retry_now", "Retry now"), button("escalate_now", "Escalate now"), button("cancel", "Cancel"));
}

function readSaga(read, refresh) {
  const failed = read.state === "compensation_failed";
  const button = (action, label) => el("button", { type: "button", disabled: !failed,
    dataset: { action, workflow: read.workflow_id },
    onclick: async () => { await actOne(read.workflow_id, action); refresh(); } }, label);
  const rows = read.history.filter((e) => e.kind !== "timer_started").map((e) => el("tr", {},
    el("td", {}, clock(e.time_ms)), el("td", {}, e.kind),
    el("td", {}, READ_STEPS[e.name] || e.name || ""), el("td", {}, e.attempt || ""),
    el("td", {}, ATTEMPT_KINDS.has(e.kind) ? ranBy(e) : ""),
    el("td.err", {}, e.error_type ? `${e.error_type}: ${e.error_message || ""}` : (e.payload || "")),
    el("td", {}, e.next_attempt_ms ? `next ${clock(e.next_attempt_ms)}` : "")));
  return el("section.saga", { dataset: { workflow: read.workflow_id } },
    el("h4", {}, `${read.user_id} · ${read.device_id} read up to #${read.up_to_seq} `,
      el("span.badge", { dataset: { state: read.state } }, `${read.state} · ${read.status}`), " ",
      el("a", { href: `#/workflow/${enc(read.workflow_id)}` }, "history"), " ",
      button("saga_retry", "Retry saga"), button("saga_resolve", "Resolve saga")),
    table(["time", "event", "step", "attempt", "ran by", "error / detail", "next"], rows));
}

export function mount(container, parts) {
  const [conversation, seq] = parts;
  const status = el("p.live");
  const body = el("div");
  container.append(el("h2", {}, `Message ${conversation} #${seq}`), status, body);
  const live = poll(async () => {
    const data = await getJson(`/v1/admin/conversations/${enc(conversation)}/messages/${enc(seq)}`);
    const m = data.message;
    body.replaceChildren(
      el("p.message", {}, `from ${m.sender || "(system)"} at ${time(m.time_ms)}: `, el("q", {}, m.body || "")),
      el("div.recipients", {}, data.recipients.map((r) => recipientSummary(r, () => live.now()))),
      el("div.scroll", {}, lanesTable(data)),
      el("h3", {}, "Read sync"),
      data.reads.length ? el("div", {}, data.reads.map((r) => readSaga(r, () => live.now())))
        : el("p.empty", {}, "No read of this message yet."));
  }, status);
  return () => live.stop();
}
