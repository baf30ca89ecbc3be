// Type declarations of Herald's JavaScript client (herald.js; docs/js-client.md).
//
// Self-contained: they name no type of the DOM or of Node, so that a project compiled with the
// ECMAScript library alone (`"lib": ["ES2020"]`, no `dom`, no @types/node) can use them. What the
// client needs of a WebSocket and of a Web Storage object is declared here as the structural
// interfaces WebSocketLike and WebStorageLike, which the browser's objects, Node's own WebSocket
// and the `ws` package's satisfy.

export declare const kReconnectInitialMs: number;
export declare const kReconnectMaxMs: number;
export declare const kReconnectFactor: number;
export declare const kRequestTimeoutMs: number;
export declare const kSendRetryWindowMs: number;
export declare const kRefreshBeforeExpiryMs: number;
export declare const kKeepAliveMs: number;
export declare const kMaxIteratorBuffer: number;
export declare const kMaxOutbox: number;
export declare const kMaxInflight: number;
export declare const kChatsPageSize: number;
export declare const kMaxBodyBytes: number;

/** The protocol's error codes (docs/protocol.md, "Errors"), and the client's own. */
export type ErrorCode =
  | "malformed_json" | "unknown_type" | "missing_field" | "wrong_type" | "too_large"
  | "not_authenticated" | "already_authenticated" | "unauthorized" | "not_member"
  | "read_beyond_last_seq" | "read_not_member" | "timeout" | "forbidden" | "not_found"
  | "conflict" | "invalid_argument" | "overloaded" | "resync_required" | "resource_exhausted"
  | "rate_limited" | "unavailable" | "outcome_unknown" | "internal"
  // the client's own: the connection dropped with the request in flight (outcome unknown), the
  // device was removed, the user was revoked, a send outlived its retry window, a send was
  // discarded, no WebSocket, a newer session of the device replaced this one (close code 4003).
  | "disconnected" | "device_removed" | "user_revoked" | "expired" | "canceled" | "no_websocket"
  | "session_replaced";

export declare class HeraldError extends Error {
  readonly code: ErrorCode | string;
  /** Sending again may succeed. */
  readonly retryable: boolean;
  /** Certainly not applied (unavailable, overloaded, rate_limited, ...): safe to retry as new. */
  readonly notApplied: boolean;
  /** May have been applied (outcome_unknown, timeout, internal, disconnected): retry idempotently. */
  readonly outcomeUnknown: boolean;
  /** rate_limited: the wait before the same request can be served. */
  readonly retryAfterMs: number | null;
  /** resync_required: the user's newest change cursor. */
  readonly cursor: number | null;
}

/**
 * What WebStorage needs of a Web Storage object: a browser's localStorage, or anything with these
 * three methods.
 */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * An event handler the client installs on its socket. Typed as a method, whose parameter TypeScript
 * compares both ways, so that a socket whose handlers take a richer event (the DOM's MessageEvent
 * and CloseEvent, the `ws` package's) fits.
 */
export type SocketHandler<E> = { handle(event: E): void }["handle"];

/**
 * What the client needs of a WebSocket: the browser's, Node's own (Node 22; Node 20 with
 * --experimental-websocket), the `ws` package's, or any object that behaves as they do. The client
 * sets the four handlers right after constructing the socket: `onopen` once the connection is
 * open, `onmessage` for each frame (`data` a string, or the UTF-8 bytes of one), `onerror` when the
 * connection fails, `onclose` once with the close code and reason.
 */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: SocketHandler<unknown> | null;
  onmessage: SocketHandler<{ data: unknown }> | null;
  onerror: SocketHandler<unknown> | null;
  onclose: SocketHandler<{ code: number; reason: string }> | null;
}
/** A WebSocket class: `new Socket(url)` opens a connection to `url`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Where a device keeps its change cursor and outbox. Methods may return promises. */
export interface Storage {
  get(key: string): string | null | Promise<string | null>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}
export declare class MemoryStorage implements Storage {
  get(key: string): string | null;
  set(key: string, value: string): void;
  remove(key: string): void;
}
/** A browser's localStorage (or any Web Storage object). */
export declare class WebStorage implements Storage {
  /** `store`: by default the global localStorage. */
  constructor(store?: WebStorageLike);
  get(key: string): string | null;
  set(key: string, value: string): void;
  remove(key: string): void;
}
/** Node: one JSON file, replaced atomically on every change. */
export declare class FileStorage implements Storage {
  constructor(path: string);
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  remove(key: string): Promise<void>;
}

export declare function backoffDelay(attempt: number, random?: () => number, initialMs?: number,
  maxMs?: number): number;

export interface Message {
  conversation_id: string; seq: number; kind: "user" | "system"; sender: string;
  sender_device: string; client_message_id: string; time_ms: number; body: string;
  edited: boolean; edited_ms: number; deleted: boolean;
}
export type ChangeKind =
  | "message_new" | "message_edited" | "message_deleted" | "conversation_created"
  | "conversation_renamed" | "members_added" | "member_removed" | "member_left" | "role_changed"
  | "read_cursor" | "read_receipt" | "delivery_receipt" | "preferences_changed"
  | "push_target_invalid" | "device_removed" | "user_revoked";
export interface Change {
  cursor: number; kind: ChangeKind; conversation_id: string; seq: number; actor: string;
  time_ms: number; message?: Message; title?: string; users?: string[]; role?: string;
  device_id?: string;
}
export interface Chat {
  conversation_id: string; kind: "direct" | "group"; title: string; activity_ms: number;
  last_seq: number; last_sender: string; preview: string; unread: number; muted: boolean;
  /** The user's read cursor in the conversation (a message seq). */
  read_cursor: number;
  /**
   * The highest seq another member has received (from `delivery_receipt` and `read_receipt`
   * changes; kept in the client's storage): the user's messages up to it are delivered. 0: none.
   */
  delivered_up_to: number;
}
export interface Member { user_id: string; role: "owner" | "admin" | "member"; joined_ms: number; }
export interface Conversation {
  conversation_id: string; kind: "direct" | "group"; title: string; created_by: string;
  created_ms: number; last_seq: number; members: Member[];
}
export interface AuthAnswer {
  user_id: string; device_id: string; server_time_ms: number; cursor: number;
  resync_required: boolean; expires_at_ms?: number;
}
export interface SendAnswer {
  seq: number; existed: boolean; server_time_ms: number | null;
  client_message_id: string; conversation_id: string;
}
export interface OutboxEntry {
  conversation_id: string; client_message_id: string; body: string; queued_ms: number;
  status: "queued" | "sending" | "sent" | "failed"; seq?: number;
}
export type ClientState =
  "idle" | "connecting" | "authenticating" | "online" | "offline" | "closed";

export interface EventMap {
  state: { type: "state"; state: ClientState };
  connected: { type: "connected"; answer: AuthAnswer };
  disconnected: { type: "disconnected"; code: number; reason: string };
  auth: { type: "auth"; answer: AuthAnswer };
  change: { type: "change"; change: Change };
  message: { type: "message"; change: Change; message: Message; kind: ChangeKind };
  read: { type: "read"; conversation_id: string; seq: number; device_id: string };
  receipt: { type: "receipt"; conversation_id: string; user_id: string; seq: number };
  /** A device of `user_id` received the conversation up to `seq` (a `delivery_receipt`). */
  delivered: { type: "delivered"; conversation_id: string; user_id: string; seq: number };
  typing: { type: "typing"; conversation_id: string; user_id: string; active: boolean };
  presence: { type: "presence"; user_id: string; online: boolean; last_seen_ms: number };
  chat: { type: "chat"; conversation_id: string; chat: Chat | null };
  outbox: { type: "outbox"; entry: OutboxEntry; error?: HeraldError | null };
  resync: { type: "resync"; cursor: number };
  error: { type: "error"; error: Error };
  /** The device was removed (close code 4001): the client stopped for good. */
  removed: { type: "removed" };
  /** The operator revoked the user (close code 4005): the client stopped; sign in again. */
  revoked: { type: "revoked" };
  /**
   * A newer session of this device replaced this one (close code 4003: the device opened more
   * sessions on the node than it allows): the client stopped and does not reconnect by itself,
   * which would replace the other session in turn. Reconnect, with a new client, only when the
   * user asks.
   */
  replaced: { type: "replaced" };
}
export type HeraldEvent = EventMap[keyof EventMap];

export interface ClientOptions {
  /** ws(s)://host:port/v1/ws */
  url: string;
  userId: string;
  deviceId: string;
  /** The device secret from the admin API; or one of jwt / getJwt. */
  token?: string;
  /** A sign-in token from the app's backend. */
  jwt?: string;
  /** Returns a fresh sign-in token; called to connect and before the current one expires. */
  getJwt?: () => Promise<string>;
  storage?: Storage;
  /** Default: the global WebSocket, else the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  /** Acknowledge every message from others as it arrives (default true). */
  autoAck?: boolean;
  /** Follow the browser's online/offline events (default: in a browser). */
  watchNetwork?: boolean;
  random?: () => number;
  requestTimeoutMs?: number;
  sendRetryWindowMs?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
}

export declare class HeraldClient {
  constructor(options: ClientOptions);
  readonly userId: string;
  readonly deviceId: string;
  readonly state: ClientState;
  /** The change cursor of the last change processed, stored; null before the first connect. */
  readonly cursor: number | null;
  /**
   * The error that stopped the client (`unauthorized`, `device_removed`, `user_revoked`,
   * `session_replaced`, `no_websocket`, a storage failure); null while it has not stopped by itself.
   */
  readonly lastError: Error | null;

  on<K extends keyof EventMap>(type: K, callback: (event: EventMap[K]) => void): () => void;
  on(type: "*", callback: (event: HeraldEvent) => void): () => void;
  events<K extends keyof EventMap>(types?: K | K[]): AsyncIterableIterator<EventMap[K]>;

  connect(): Promise<AuthAnswer>;
  close(): void;
  setNetwork(online: boolean): void;

  request(type: string, fields?: Record<string, unknown>): Promise<Record<string, any>>;

  send(conversationId: string, body: string, clientMessageId?: string): Promise<SendAnswer>;
  waitForSend(clientMessageId: string): Promise<SendAnswer>;
  pendingSends(): OutboxEntry[];
  discard(clientMessageId: string): Promise<void>;

  ack(conversationId: string, seq: number): Promise<{ acked_up_to: number }>;
  markRead(conversationId: string, seq: number): Promise<{ saga_id: string; cursor: number }>;
  typing(conversationId: string, active?: boolean): Promise<Record<string, never>>;
  presence(userId: string): { online: boolean; last_seen_ms: number } | null;

  loadChats(): Promise<Chat[]>;
  chatList(): Chat[];
  unreadTotal(): number;
  /** The conversation's Chat.delivered_up_to, also before the chat list is loaded. */
  deliveredUpTo(conversationId: string): number;
  history(conversationId: string, options?: { beforeSeq?: number; afterSeq?: number; limit?: number }):
    Promise<{ messages: Message[]; next_before?: number; next_after?: number; has_more?: boolean }>;
  sync(since: number, limit?: number): Promise<{ changes: Change[]; cursor: number; has_more: boolean }>;

  createDirect(userId: string): Promise<Conversation>;
  createGroup(members: string[], title?: string, conversationId?: string): Promise<Conversation>;
  conversation(conversationId: string): Promise<Conversation>;
  edit(conversationId: string, seq: number, body: string): Promise<Record<string, never>>;
  remove(conversationId: string, seq: number): Promise<Record<string, never>>;
  addMembers(conversationId: string, members: string[]): Promise<Record<string, never>>;
  leave(conversationId: string): Promise<Record<string, never>>;
}
