// The dashboard's entry: sign-in, the hash router (#/search?q=..., #/message/<conv>/<seq>,
// #/workflow/<id>, #/workflows, #/cluster) and live refresh: the shown view polls its API.
import { signedIn, signIn, signOut, operator, ApiError } from "./api.js";
import { el } from "./util.js";
import * as search from "./search.js";
import * as message from "./message.js";
import * as workflows from "./workflows.js";
import * as workflow from "./workflow.js";
import * as cluster from "./cluster.js";

const views = { search, message, workflows, workflow, cluster };
let unmount = null;

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter((p) => p !== "").map(decodeURIComponent);
  const name = views[parts[0]] ? parts[0] : "search";
  return { name, parts: parts.slice(1), query: new URLSearchParams(query) };
}

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("view").replaceChildren();
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("session").replaceChildren();
}

// Called by views when the API refuses the credential.
export function credentialRefused(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    signOut();
    if (unmount) unmount();
    unmount = null;
    showLogin(error.message);
    return true;
  }
  return false;
}

function route() {
  if (unmount) unmount();
  unmount = null;
  if (!signedIn()) {
    showLogin();
    return;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("session").replaceChildren(
    el("span", {}, "operator: ", el("b", { id: "operator-name" }, operator()), " "),
    el("button", { type: "button", onclick: () => { signOut(); route(); } }, "Sign out"));
  const { name, parts, query } = parseHash();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === name ||
      (a.dataset.view === "search" && (name === "message" || name === "workflow")));
  }
  const container = document.getElementById("view");
  container.replaceChildren();
  unmount = views[name].mount(container, parts, query);
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(document.getElementById("token").value, document.getElementById("operator").value);
  document.getElementById("token").value = "";
  route();
});
window.addEventListener("hashchange", route);
route();
