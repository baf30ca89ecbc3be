// The "build a chat in ten minutes" walkthrough of docs/js-client.md, steps 2 to 6, whole: Alice
// and Bob connect, listen, talk, read, type, list their chats and close. The doc quotes this file
// and js.walkthrough (clients/js/test/walkthrough_test.mjs) runs it against a real node.
//
// Usage, with a node and the two devices of step 1, from the checkout:
//   ALICE_TOKEN=... BOB_TOKEN=... node clients/js/examples/chat-walkthrough.mjs
// HERALD_URL overrides ws://127.0.0.1:7400/v1/ws. The two storage files go to the current
// directory. Node 18 and 20 need the ws package (cd clients/js && npm ci), or, on Node 20,
// `node --experimental-websocket`.

// 2. Connect.
import { HeraldClient, FileStorage } from "../herald.js";

const url = process.env.HERALD_URL ?? "ws://127.0.0.1:7400/v1/ws";
const alice = new HeraldClient({
  url, userId: "alice", deviceId: "alice-laptop", token: process.env.ALICE_TOKEN,
  storage: new FileStorage("alice-laptop.json"),   // cursor and outbox survive a restart
});
const bob = new HeraldClient({
  url, userId: "bob", deviceId: "bob-laptop", token: process.env.BOB_TOKEN,
  storage: new FileStorage("bob-laptop.json"),
});
await Promise.all([alice.connect(), bob.connect()]);

// 3. Listen.
alice.on("delivered", ({ user_id, seq }) => console.log(`${user_id} received up to #${seq}`));
alice.on("typing", ({ user_id, active }) => console.log(user_id, active ? "is typing" : "stopped"));
const readByBob = new Promise((resolve) => alice.on("receipt", ({ user_id, seq }) => {
  console.log(`${user_id} read up to #${seq}`);
  resolve(seq);
}));

const bobsFirst = (async () => {
  for await (const { message } of bob.events("message")) {
    console.log(`bob got #${message.seq} from ${message.sender}: ${message.body}`);
    return message;   // one is enough here; an app keeps looping (close() ends the loop)
  }
})();

// 4. Talk.
const { conversation_id } = await alice.createDirect("bob");
const { seq } = await alice.send(conversation_id, "Lunch at noon?");
console.log(`alice sent #${seq}`);

// 5. Read, type, list.
const message = await bobsFirst;
await bob.markRead(conversation_id, message.seq);  // bob's other devices get `read`, alice `receipt`
await bob.typing(conversation_id, true);
const chats = await bob.loadChats();               // then kept current from the stream
console.log(`bob has ${chats.length} chat(s), ${bob.unreadTotal()} unread`);

// 6. Close, once Alice saw Bob's read receipt.
await readByBob;
alice.close();
bob.close();
