// Cluster: nodes, roles, terms, commit and applied indexes, follower lag, the leader changes
// seen, and this node's recent fsync, commit and apply latency and connected devices
// (GET /v1/cluster every second, GET /metrics every two).
import { getJson, getText } from "./api.js";
import { el, clock, table } from "./util.js";
import { poll } from "./live.js";
import { parseMetrics, histogramDelta } from "./metrics.js";

// Leader changes remembered in the view, at most.
const MAX_LEADER_CHANGES = 20;

// A peer report older than this is shown as stale (the node may be down).
const STALE_REPORT_MS = 500;
const TICK_MS = 10;

function nodesTable(view) {
  const leader = view.nodes.find((n) => n.id === view.leader);
  const rows = view.nodes.map((n) => {
    const ageMs = n.report_age_ticks !== undefined ? n.report_age_ticks * TICK_MS : 0;
    const stale = ageMs > STALE_REPORT_MS;
    let lag = "";
    if (leader && n.id !== leader.id && !stale) {
      lag = n.match !== undefined ? leader.last_index - n.match : Math.max(0, leader.commit - n.applied);
    }
    return el("tr", { dataset: { node: n.id, role: n.role, stale: stale ? "yes" : "no" } },
      el("td", {}, n.id, n.id === view.id ? " (this node)" : ""),
      el("td.role", {}, stale ? `${n.role} (last heard ${ageMs} ms ago)` : n.role),
      el("td", {}, n.term), el("td", {}, n.commit), el("td", {}, n.applied),
      el("td", {}, n.last_index), el("td.lag", {}, lag),
      el("td", {}, n.report_age_ticks !== undefined ? `${ageMs} ms` : "now"),
      el("td", {}, n.client_address || ""));
  });
  return table(["node", "role", "term", "commit", "applied", "last index", "lag (entries)", "report age",
    "client address"], rows, { id: "nodes" });
}

function latencyRow(label, delta) {
  if (!delta || delta.count === 0) return el("tr", {}, el("th", {}, label), el("td", { colspan: 3 }, "no samples lately"));
  return el("tr", {}, el("th", {}, label), el("td", {}, `${delta.count}`),
    el("td", {}, `${(1000 * delta.sum / delta.count).toFixed(2)} ms`),
    el("td", {}, `≤ ${delta.p99 === Infinity ? "∞" : (1000 * delta.p99).toFixed(1) + " ms"}`));
}

export function mount(container) {
  const status = el("p.live");
  const summary = el("div");
  const nodes = el("div");
  const latency = el("div");
  const changes = [];
  let lastLeader;
  let lastTerm;
  let previous = null;
  container.append(el("h2", {}, "Cluster"), status, summary, nodes, el("h3", {}, "This node"), latency,
    el("h3", {}, "Leader changes seen"), el("ol", { id: "leader-changes" }));
  const live = poll(async () => {
    const view = await getJson("/v1/cluster");
    if (view.leader !== lastLeader || view.term !== lastTerm) {
      if (lastTerm !== undefined) {
        changes.unshift({ at: Date.now(), from: lastLeader, to: view.leader, term: view.term });
        changes.length = Math.min(changes.length, MAX_LEADER_CHANGES);
      }
      lastLeader = view.leader;
      lastTerm = view.term;
    }
    summary.replaceChildren(el("p", {}, "leader ", el("b", { id: "leader" }, view.leader === null ? "none" : view.leader),
      " · term ", el("b", { id: "term" }, view.term), ` · answered by node ${view.id}`));
    nodes.replaceChildren(nodesTable(view));
    document.getElementById("leader-changes").replaceChildren(...changes.map((c) =>
      el("li", {}, `${clock(c.at)}: leader ${c.from ?? "none"} → ${c.to ?? "none"} (term ${c.term})`)));
  }, status, 1000);
  const metrics = poll(async () => {
    const m = parseMetrics(await getText("/metrics"));
    const rows = [
      latencyRow("fsync (log write)", histogramDelta(m, previous, "herald_raft_log_sync_seconds")),
      latencyRow("commit (send → stored)", histogramDelta(m, previous, "herald_messaging_send_stored_seconds")),
      latencyRow("apply", histogramDelta(m, previous, "herald_raft_apply_seconds")),
    ];
    previous = m;
    latency.replaceChildren(
      el("p", {}, "connected devices ", el("b", { id: "ws-connections" }, m.value("herald_ws_connections") ?? "?"),
        " · leader changes seen by this node ", el("b", {}, m.value("herald_raft_leader_changes_total") ?? "?")),
      table(["latency since the last refresh", "samples", "mean", "p99 bucket"], rows));
  }, null, 2000);
  return () => {
    live.stop();
    metrics.stop();
  };
}
