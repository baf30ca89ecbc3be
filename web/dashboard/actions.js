// Operator actions: each is confirmed in a dialog, then sent as one replicated command per
// workflow, recorded in the workflow's history with the operator's name.
import { postJson, operator, enc } from "./api.js";

export const ACTIONS = {
  retry_now: "Retry now",
  escalate_now: "Escalate now",
  cancel: "Cancel",
  saga_retry: "Retry saga",
  saga_resolve: "Resolve saga",
};

// Asks the operator to confirm `text`; resolves to the reason typed, or null when backed out.
function confirmDialog(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-reason").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? document.getElementById("confirm-reason").value : null);
    }, { once: true });
    dialog.showModal();
  });
}

// Tells the outcome of the last action in the header.
function report(text, ok) {
  const node = document.getElementById("action-result");
  node.textContent = text;
  node.className = ok ? "ok" : "error";
}

// Runs `action` on one workflow after confirmation; resolves to the API's answer, or null.
export async function actOne(id, action) {
  const reason = await confirmDialog(`${ACTIONS[action]}: workflow ${id}?`);
  if (reason === null) return null;
  try {
    const answer = await postJson(`/v1/workflows/${enc(id)}/actions`,
      { action, operator: operator(), reason });
    report(`${ACTIONS[action]} ${id}: done (${answer.workflow.status} · ${answer.workflow.state})`, true);
    return answer;
  } catch (error) {
    report(`${ACTIONS[action]} ${id}: ${error.code}: ${error.message}`, false);
    return null;
  }
}

// Runs `action` on every workflow of `ids` after one confirmation; resolves to the per-workflow
// results, or null.
export async function actBatch(ids, action) {
  if (ids.length === 0) return null;
  const reason = await confirmDialog(`${ACTIONS[action]}: ${ids.length} workflow(s)?`);
  if (reason === null) return null;
  try {
    const answer = await postJson("/v1/workflows/actions", { action, operator: operator(), reason, ids });
    const failed = answer.results.filter((r) => !r.ok);
    report(`${ACTIONS[action]}: ${answer.results.length - failed.length} done, ${failed.length} refused` +
      (failed.length ? ` (${failed[0].id}: ${failed[0].error.message})` : ""), failed.length === 0);
    return answer;
  } catch (error) {
    report(`${ACTIONS[action]}: ${error.code}: ${error.message}`, false);
    return null;
  }
}
