// An app's use of the client as TypeScript sees it through herald.d.ts: type-checked (strict) by
// js.types (types_test.mjs), never run. Each `@ts-expect-error` line is a misuse the declarations
// must refuse; tsc reports the directive itself when the line compiles.
import {
  FileStorage, HeraldClient, HeraldError, MemoryStorage, WebStorage, backoffDelay,
  kMaxBodyBytes, kRefreshBeforeExpiryMs,
} from "../../herald.js";
import type {
  AuthAnswer, Chat, ClientState, HeraldEvent, Message, OutboxEntry, SendAnswer, Storage,
} from "../../herald.js";

export async function chat(url: string, aliceSecret: string, signIn: () => Promise<string>) {
  const alice = new HeraldClient({
    url, userId: "alice", deviceId: "alice-laptop", token: aliceSecret,
    storage: new FileStorage("alice-laptop.json"), autoAck: true, reconnectMaxMs: 10_000,
  });
  const bob = new HeraldClient({
    url, userId: "bob", deviceId: "bob-web", getJwt: signIn, storage: new WebStorage(localStorage),
    WebSocket, watchNetwork: true,
  });
  const memory: Storage = new MemoryStorage();
  const carol = new HeraldClient({ url, userId: "carol", deviceId: "carol-1", jwt: "a.b.c",
    storage: memory });

  const answer: AuthAnswer = await alice.connect();
  const expiresAtMs: number | undefined = answer.expires_at_ms;
  await bob.connect();
  const state: ClientState = alice.state;
  const cursor: number | null = alice.cursor;

  const offMessage = alice.on("message", ({ message, kind }) => {
    const text: string = `${message.sender}: ${message.body} (${kind})`;
    return text;
  });
  alice.on("delivered", ({ user_id, seq }) => [user_id.toUpperCase(), seq + 1]);
  alice.on("receipt", (event) => event.seq.toFixed());
  alice.on("typing", ({ active }) => !active);
  alice.on("chat", ({ chat }) => chat?.unread);
  alice.on("outbox", ({ entry, error }) => [entry.status, error?.code]);
  alice.on("revoked", (event) => event.type);
  alice.on("replaced", () => alice.lastError?.message);
  alice.on("*", (event: HeraldEvent) => event.type);
  offMessage();

  const { conversation_id } = await alice.createDirect("bob");
  const sent: SendAnswer = await alice.send(conversation_id, "Lunch at noon?");
  const again: SendAnswer = await alice.waitForSend(sent.client_message_id);
  const queued: OutboxEntry[] = alice.pendingSends();
  await alice.discard(queued[0]?.client_message_id ?? "none");

  for await (const event of bob.events(["message", "read"])) {
    if (event.type === "message") {
      const message: Message = event.message;
      await bob.markRead(conversation_id, message.seq);
    } else {
      const device: string = event.device_id;
      void device;
    }
    break;
  }
  await bob.typing(conversation_id, true);
  const chats: Chat[] = await bob.loadChats();
  const unread: number = bob.unreadTotal() + chats[0].unread + bob.deliveredUpTo(conversation_id);
  const page = await bob.history(conversation_id, { beforeSeq: again.seq, limit: 20 });
  const bodies: string[] = page.messages.map((m) => m.body);
  const changes = await bob.sync(0, 100);
  const group = await carol.createGroup(["alice", "bob"], "Lunch crew");
  const owner = group.members.find((m) => m.role === "owner")?.user_id;
  const presence = alice.presence("bob")?.online ?? false;
  const custom = await alice.request("ping");

  try {
    await carol.send(conversation_id, "let me in");
  } catch (error) {
    if (error instanceof HeraldError && !error.retryable) {
      const code: string = error.code;
      const waitMs: number | null = error.retryAfterMs;
      void [code, waitMs, error.outcomeUnknown, error.notApplied];
    }
  }

  // @ts-expect-error: no such event
  alice.on("messages", () => {});
  // @ts-expect-error: a body is a string
  await alice.send(conversation_id, 42);
  // @ts-expect-error: a message event carries no `seq` of its own
  alice.on("message", (event) => event.seq);
  // @ts-expect-error: userId and deviceId are required
  new HeraldClient({ url, token: aliceSecret });
  // @ts-expect-error: a seq is a number
  const wrong: string = sent.seq;
  // @ts-expect-error: the state is one of the listed ones
  const nonsense: ClientState = "sleeping";

  alice.close();
  bob.setNetwork(false);
  return [expiresAtMs, state, cursor, unread, bodies, changes.has_more, owner, presence, custom,
    backoffDelay(3), kMaxBodyBytes, kRefreshBeforeExpiryMs, wrong, nonsense];
}
