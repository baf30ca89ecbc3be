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

// Runs `action` on one workflow after confirmation; resolves to the API's answer, or null.
export async function actOne(id, action) {
  const reason = await confirmDialog(`${ACTIONS[action]}: workflow ${id}?`);
  if (reason === null) return null;
  return postJson(`/v1/workflows/${enc(id)}/actions`,
    { action, operator: operator(), reason });
}

// Runs `action` on every workflow of `ids` after one confirmation; resolves to the per-workflow
// results, or null.
export async function actBatch(ids, action) {
  if (ids.length === 0) return null;
  const reason = await confirmDialog(`${ACTIONS[action]}: ${ids.length} workflow(s)?`);
  if (reason === null) return null;
  return postJson("/v1/workflows/actions", { action, operator: operator(), reason, ids });
}
