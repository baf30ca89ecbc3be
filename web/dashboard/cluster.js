// Cluster: every node's role, term, commit and applied index, follower lag, the leader changes it
// has seen, its recent fsync, commit and apply latency and its connected devices (each node sends
// its own figures to the others every second), and the leader changes this page has seen
// (GET /v1/cluster every second).
import { getJson } from "./api.js";
import { el, clock, table } from "./util.js";
import { poll } from "./live.js";

// Leader changes remembered in the view, at most.
const MAX_LEADER_CHANGES = 20;

// A peer report older than this is shown as stale (the node may be down).
const STALE_REPORT_MS = 500;
const TICK_MS = 10;

// "p50 / p99" of one latency in milliseconds, or a dash without samples in the window.
function latency(summary) {
  if (!summary || summary.count === 0) return "–";
  return `${summary.p50_ms.toFixed(1)} / ${summary.p99_ms.toFixed(1)}`;
}

// The figures cells of one node: leader changes, devices, fsync, commit, apply, figures age.
function figuresCells(n) {
  const f = n.figures;
  if (!f) return [el("td.figures-missing", { colspan: 6 }, "no figures received")];
  const age = f.stale ? `stale: ${(f.age_ms / 1000).toFixed(1)} s old` : `${f.age_ms} ms`;
  return [
    el("td.leader-changes", {}, f.leader_changes),
    el("td.devices", {}, f.devices),
    el("td.fsync", {}, latency(f.fsync)),
    el("td.commit", {}, latency(f.commit)),
    el("td.apply", {}, latency(f.apply)),
    el("td.figures-age", {}, age),
  ];
}

function nodesTable(view) {
  const leader = view.nodes.find((n) => n.id === view.leader);
  const rows = view.nodes.map((n) => {
    const ageMs = n.report_age_ticks !== undefined ? n.report_age_ticks * TICK_MS : 0;
    const stale = ageMs > STALE_REPORT_MS;
    let lag = "";
    if (leader && n.id !== leader.id && !stale) {
      lag = n.match !== undefined ? leader.last_index - n.match : Math.max(0, leader.commit - n.applied);
    }
    const figuresStale = !n.figures || n.figures.stale;
    return el("tr", {
      dataset: { node: n.id, role: n.role, stale: stale ? "yes" : "no", figuresStale: figuresStale ? "yes" : "no" },
    },
      el("td", {}, n.id, n.id === view.id ? " (this node)" : ""),
      el("td.role", {}, stale ? `${n.role} (last heard ${ageMs} ms ago)` : n.role),
      el("td", {}, n.term), el("td", {}, n.commit), el("td", {}, n.applied),
      el("td", {}, n.last_index), el("td.lag", {}, lag),
      ...figuresCells(n),
      el("td", {}, n.report_age_ticks !== undefined ? `${ageMs} ms` : "now"),
      el("td", {}, n.client_address || ""));
  });
  return table(["node", "role", "term", "commit", "applied", "last index", "lag (entries)", "leader changes",
    "devices", "fsync p50 / p99 (ms)", "commit p50 / p99 (ms)", "apply p50 / p99 (ms)", "figures age", "report age",
    "client address"], rows, { id: "nodes" });
}

export function mount(container) {
  const status = el("p.live");
  const summary = el("div");
  const nodes = el("div");
  const note = el("p.note");
  const changes = [];
  let lastLeader;
  let lastTerm;
  container.append(el("h2", {}, "Cluster"), status, summary, nodes, note,
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
    const own = view.nodes.find((n) => n.id === view.id);
    const windowMs = own && own.figures ? own.figures.window_ms : 0;
    note.replaceChildren(`Latencies: nearest-rank p50 / p99 over each node's last ${windowMs / 1000} s ` +
      "(fsync: the log's durable write per round; commit: a proposal made through the node until it applied " +
      "there; apply: a round's apply). Devices: WebSocket connections open on the node. Each node sends its " +
      "figures every second; figures older than 3 s are stale.");
    document.getElementById("leader-changes").replaceChildren(...changes.map((c) =>
      el("li", {}, `${clock(c.at)}: leader ${c.from ?? "none"} → ${c.to ?? "none"} (term ${c.term})`)));
  }, status, 1000);
  return () => live.stop();
}
