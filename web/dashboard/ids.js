// Herald's composed workflow ids: "prefix/part/part...", '%' and '/' in parts percent-escaped.

export function split_id(id) {
  return id.split("/").map((part) => part.replace(/%2F/gi, "/").replace(/%25/g, "%"));
}

// The message a delivery or read-sync workflow belongs to, or null.
export function message_of(id) {
  const p = split_id(id);
  if (p.length === 4 && p[0] === "delivery") return { conversation: p[1], seq: Number(p[2]) };
  if (p.length === 5 && p[0] === "read_sync") return { conversation: p[1], seq: Number(p[4]) };
  return null;
}
