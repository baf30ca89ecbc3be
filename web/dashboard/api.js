// The operator API as the dashboard uses it. The token is kept in this tab's session storage and
// sent only in the Authorization header, never in a URL.

const TOKEN_KEY = "herald.token";
const OPERATOR_KEY = "herald.operator";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function signedIn() {
  return sessionStorage.getItem(TOKEN_KEY) !== null;
}

export function operator() {
  return sessionStorage.getItem(OPERATOR_KEY) || "";
}

export function signIn(token, name) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(OPERATOR_KEY, name);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(OPERATOR_KEY);
}

async function call(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  if (!response.ok) {
    let code = "http_" + response.status;
    let message = text;
    try {
      const error = JSON.parse(text).error;
      code = error.code;
      message = error.message;
    } catch (_) {
      // not a JSON error body: keep the text
    }
    throw new ApiError(response.status, code, message);
  }
  return text;
}

export async function getJson(path) {
  return JSON.parse(await call("GET", path));
}

export async function getText(path) {
  return call("GET", path);
}

export async function postJson(path, body) {
  const text = await call("POST", path, body);
  return text ? JSON.parse(text) : {};
}

export const enc = encodeURIComponent;
