// An app's use of the client in a project compiled with the ECMAScript library alone: no DOM types,
// no @types/node (test/types/tsconfig.nodom.json). Type-checked (strict) by js.types
// (types_test.mjs), never run. herald.d.ts must name no type of the DOM for it to compile; each
// `@ts-expect-error` line is a misuse the declarations must refuse.
import { FileStorage, HeraldClient, HeraldError, MemoryStorage, WebStorage } from "../../herald.js";
import type {
  SocketHandler, Storage, WebSocketConstructor, WebSocketLike, WebStorageLike,
} from "../../herald.js";

// A socket of the app's own, written against the declared interface.
class LoopbackSocket implements WebSocketLike {
  onopen: SocketHandler<unknown> | null = null;
  onmessage: SocketHandler<{ data: unknown }> | null = null;
  onerror: SocketHandler<unknown> | null = null;
  onclose: SocketHandler<{ code: number; reason: string }> | null = null;
  readonly sent: string[] = [];
  constructor(readonly url: string) {}
  send(data: string): void { this.sent.push(data); }
  close(code = 1000, reason = ""): void { this.onclose?.({ code, reason }); }
}

// A socket class as the `ws` package and the DOM declare theirs: more constructor parameters, more
// members, and handlers that take richer events than the ones the client relies on.
interface RichMessageEvent { data: string | ArrayBuffer; type: string; target: RichSocket }
interface RichCloseEvent { code: number; reason: string; wasClean: boolean; target: RichSocket }
declare class RichSocket {
  constructor(address: string, protocols?: string | string[]);
  readonly readyState: number;
  binaryType: string;
  onopen: ((event: { type: string; target: RichSocket }) => void) | null;
  onmessage: ((event: RichMessageEvent) => void) | null;
  onerror: ((event: { type: string; error: unknown; message: string }) => void) | null;
  onclose: ((event: RichCloseEvent) => void) | null;
  send(data: string | ArrayBuffer | ArrayBufferView, callback?: (error?: Error) => void): void;
  close(code?: number, reason?: string): void;
}

// A Web Storage object of the app's own (a browser is not needed to use WebStorage).
const entries = new Map<string, string>();
const webStorage: WebStorageLike = {
  getItem: (key) => entries.get(key) ?? null,
  setItem: (key, value) => { entries.set(key, value); },
  removeItem: (key) => { entries.delete(key); },
};

export async function run(url: string, secret: string) {
  const sockets: WebSocketConstructor[] = [LoopbackSocket, RichSocket];
  const storages: Storage[] = [new MemoryStorage(), new WebStorage(webStorage),
    new FileStorage("device.json")];
  const clients = sockets.map((WebSocket, i) => new HeraldClient({
    url, userId: "alice", deviceId: `alice-${i}`, token: secret, WebSocket, storage: storages[i],
    watchNetwork: false,
  }));
  clients[0].on("replaced", (event) => {
    const type: "replaced" = event.type;
    return type;
  });
  clients[0].on("error", ({ error }) => error instanceof HeraldError && !error.retryable);
  await clients[1].connect();

  // @ts-expect-error: a socket needs send and close
  new HeraldClient({ url, userId: "a", deviceId: "d", token: secret, WebSocket: class {
    constructor(readonly url: string) {}
  } });
  const quiet = { onopen: null, onmessage: null, onerror: null };
  // @ts-expect-error: onclose is handed a close event, not a number
  const numbered: WebSocketLike = { ...quiet, send() {}, close() {}, onclose: (code: number) => 0 };
  // @ts-expect-error: a Map is no Web Storage object
  new WebStorage(new Map<string, string>());
  return numbered;
}
