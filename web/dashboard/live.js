// Live refresh: runs `refresh` now and then every `intervalMs` while the view is shown; a refused
// credential sends the operator back to sign-in.
import { credentialRefused } from "./app.js";
import { errorBox } from "./util.js";

export const REFRESH_MS = 2000;

export function poll(refresh, statusNode, intervalMs = REFRESH_MS) {
  let stopped = false;
  let timer = null;
  const run = async () => {
    if (stopped) return;
    try {
      await refresh();
      if (statusNode) {
        statusNode.replaceChildren(`live · updated ${new Date().toLocaleTimeString()}`);
        statusNode.classList.remove("stale");
      }
    } catch (error) {
      if (credentialRefused(error)) {
        stopped = true;
        return;
      }
      if (statusNode) {
        statusNode.replaceChildren(errorBox(error));
        statusNode.classList.add("stale");
      }
    }
    if (!stopped) timer = setTimeout(run, intervalMs);
  };
  run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    now() {
      clearTimeout(timer);
      run();
    },
  };
}
