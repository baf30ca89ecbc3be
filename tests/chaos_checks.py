"""The invariants of the chaos test (tests/chaos_test.py), as pure functions over its records.

Inputs are plain data: the clients' records (what each device sent and was answered, what it
received live) and the nodes' state as devices read it (each user's whole change stream, synced
from cursor 0 through each node; each conversation's last seq). Each check returns a list of
problems, one sentence each; an empty list means the invariant held. Nothing here does I/O, so
tests/chaos_checks_test.py can feed it histories that break each invariant.

Record shapes:
  stream:   list of Change dicts (docs/protocol.md), in the order sync returned them
  sends:    {(conversation_id, device_id, client_message_id): [seq answered by each ok]}
  answers:  {(device_id, conversation_id): [(seq asked, mark answered), ...]} in answer order,
            for `ack` (acked_up_to) and `read` (the read cursor)
  received: {device_id: [Change, ...]} every change a device received live, in arrival order
"""

from collections import defaultdict


def message_changes(stream, conversation_id):
    return [c for c in stream
            if c.get("kind") == "message_new" and c.get("conversation_id") == conversation_id]


def check_stream(user, stream, last_seqs):
    """One user's whole stream: cursors 1..N in order; per conversation the user is in (its
    last seq in `last_seqs`), every seq 1..last exactly once in order, no message sent twice
    under one (device, client_message_id), read cursors only moving forward."""
    problems = []
    for i, change in enumerate(stream):
        if change.get("cursor") != i + 1:
            problems.append(f"{user}: change {i + 1} of the stream has cursor {change.get('cursor')}")
            break
    for conv, last in sorted(last_seqs.items()):
        seqs = [c["seq"] for c in message_changes(stream, conv)]
        if seqs != list(range(1, last + 1)):
            dups = sorted({s for s in seqs if seqs.count(s) > 1})
            missing = sorted(set(range(1, last + 1)) - set(seqs))
            problems.append(
                f"{user}: {conv} holds {len(seqs)} messages for last seq {last}"
                f" (duplicate seqs {dups[:10]}, missing {missing[:10]},"
                f" in order: {seqs == sorted(seqs)})")
        seen = {}
        for c in message_changes(stream, conv):
            msg = c.get("message", {})
            key = (msg.get("sender_device"), msg.get("client_message_id"))
            if key in seen and seen[key] != c["seq"]:
                problems.append(f"{user}: {conv} stores {key} twice, as seqs {seen[key]} and"
                                f" {c['seq']}")
            seen.setdefault(key, c["seq"])
    effective = defaultdict(int)
    for c in stream:
        conv = c.get("conversation_id")
        if c.get("kind") == "read_cursor" and c["seq"] <= effective[conv]:
            problems.append(f"{user}: read cursor of {conv} went from {effective[conv]} to"
                            f" {c['seq']} at change {c['cursor']}")
        effective[conv] = max(effective[conv], _read_cursor_after(user, c))
    return problems


def check_sends(sends, streams, members, unanswered):
    """Every acknowledged send: one seq however often it was answered, and the message at that
    seq, sent by that device under that id, in every member's stream. `unanswered` lists the
    sends no ok ever answered although the run healed and let them retry."""
    problems = [f"send {key} was never acknowledged" for key in sorted(unanswered)]
    index = {}
    for user, stream in streams.items():
        for c in stream:
            if c.get("kind") == "message_new":
                index[(user, c["conversation_id"], c["seq"])] = c.get("message", {})
    for (conv, device, cmid), seqs in sorted(sends.items()):
        if not seqs:
            continue
        if len(set(seqs)) != 1:
            problems.append(f"send {(conv, device, cmid)} was answered with different seqs {seqs}")
        for user in members[conv]:
            msg = index.get((user, conv, seqs[0]))
            if msg is None:
                problems.append(f"acknowledged send {(conv, device, cmid)} at seq {seqs[0]} is"
                                f" not in {user}'s stream")
            elif (msg.get("sender_device"), msg.get("client_message_id")) != (device, cmid):
                problems.append(f"{user}'s stream holds {msg.get('sender_device')}/"
                                f"{msg.get('client_message_id')} at seq {seqs[0]} of {conv},"
                                f" where {device}/{cmid} was acknowledged")
    return problems


def check_send_order(sends):
    """A device sends its next message only once the previous one was acknowledged, so in each
    conversation its messages' seqs grow in the order it sent them. `sends` is in send order."""
    problems = []
    last = {}
    for (conv, device, cmid), seqs in sends.items():
        if not seqs:
            continue
        if seqs[0] <= last.get((conv, device), (0, None))[0]:
            before = last[(conv, device)]
            problems.append(f"{device} sent {cmid} after {before[1]} in {conv}, and it got seq"
                            f" {seqs[0]}, not after {before[0]}")
        last[(conv, device)] = (seqs[0], cmid)
    return problems


def check_marks(kind, answers):
    """`ack` and `read` answers per device and conversation: each at least what was asked, and
    never below an earlier one (marks only move forward)."""
    problems = []
    for (device, conv), pairs in sorted(answers.items()):
        previous = 0
        for asked, mark in pairs:
            if mark < asked:
                problems.append(f"{kind} of {conv} up to {asked} by {device} answered {mark}")
            if mark < previous:
                problems.append(f"{kind} mark of {device} in {conv} went back from {previous} to"
                                f" {mark}")
            previous = max(previous, mark)
    return problems


def _read_cursor_after(user, change):
    """The read cursor a change of `user`'s stream implies: a `read_cursor` change moves it, and
    so does the user's own message (a sender has read what it sent), without a change of its
    own; 0 for any other change."""
    if change.get("kind") == "read_cursor":
        return change["seq"]
    if change.get("kind") == "message_new" and change.get("message", {}).get("sender") == user:
        return change["seq"]
    return 0


def final_read_cursors(user, stream):
    """Each conversation's read cursor after `stream` (conversations never read are absent)."""
    cursors = {}
    for c in stream:
        mark = _read_cursor_after(user, c)
        if mark:
            conv = c["conversation_id"]
            cursors[conv] = max(cursors.get(conv, 0), mark)
    return cursors


def check_live(device, received, stream):
    """What a device received live, across its reconnections, is the user's stream: every
    cursor once, without a gap, the same change as sync returns, up to the stream's end."""
    problems = []
    expected = 1
    for c in received:
        cursor = c.get("cursor")
        if cursor != expected:
            problems.append(f"{device} received cursor {cursor} where {expected} was next")
            return problems
        if cursor > len(stream) or stream[cursor - 1] != c:
            problems.append(f"{device} received a change {cursor} that sync does not return: {c}")
            return problems
        expected += 1
    if expected != len(stream) + 1:
        problems.append(f"{device} stopped at cursor {expected - 1} of {len(stream)}")
    return problems


def check_read_convergence(user, devices, received, stream, read_answers):
    """The read cursors a user's devices ended with agree with each other and with the stream,
    and are at least every read an ok answered."""
    problems = []
    final = final_read_cursors(user, stream)
    for device in devices:
        mine = final_read_cursors(user, received.get(device, []))
        if mine != final:
            problems.append(f"{device} ended with read cursors {mine}, {user}'s stream with"
                            f" {final}")
    for (device, conv), pairs in sorted(read_answers.items()):
        if device in devices and pairs and final.get(conv, 0) < max(m for _, m in pairs):
            problems.append(f"{user}'s read cursor of {conv} ends at {final.get(conv, 0)}, below"
                            f" the {max(m for _, m in pairs)} answered to {device}")
    return problems


def check_chats(user, chats, stream, last_seqs):
    """The chat list agrees with the stream: each conversation's last seq, and as unread what
    lies past the read cursor. `chats` holds (conversation_id, last_seq, unread) triples."""
    problems = []
    final = final_read_cursors(user, stream)
    expected = sorted((conv, last, last - min(final.get(conv, 0), last))
                      for conv, last in last_seqs.items())
    if sorted(chats) != expected:
        problems.append(f"{user}'s chats {sorted(chats)}, where the stream gives {expected}")
    return problems


# Delivery workflow states once a device of the recipient acknowledged the message.
CONFIRMED_STATES = ("delivery_confirmed", "read_acknowledged")


def check_deliveries(timelines, members):
    """Message timelines (the admin API's answer for (conversation, seq)) after every device
    acknowledged and read everything: one delivery workflow per member but the sender, each
    confirmed."""
    problems = []
    for (conv, seq), answer in sorted(timelines.items()):
        sender = answer["message"]["sender"]
        states = {r["user_id"]: r["state"] for r in answer["recipients"]}
        expected = sorted(u for u in members[conv] if u != sender)
        if sorted(states) != expected:
            problems.append(f"{conv} seq {seq} has delivery workflows for {sorted(states)},"
                            f" not {expected}")
        for user, state in sorted(states.items()):
            if state not in CONFIRMED_STATES:
                problems.append(f"{conv} seq {seq}: the delivery to {user} is {state} although"
                                f" its devices acknowledged it")
    return problems


def check_same(what, views):
    """`views` maps a source (a node, a phase) to what it returned; all must be equal."""
    items = sorted(views.items(), key=lambda kv: str(kv[0]))
    if not items:
        return []
    first_source, first = items[0]
    problems = []
    for source, view in items[1:]:
        if view != first:
            problems.append(f"{what}: {source} differs from {first_source}"
                            f" ({_difference(first, view)})")
    return problems


def check_prefix(what, earlier, later):
    """A stream read after more time passed extends the earlier one; it never rewrites it."""
    if later[:len(earlier)] != earlier:
        return [f"{what}: the later stream does not extend the earlier one"
                f" ({_difference(earlier, later[:len(earlier)])})"]
    return []


def _difference(a, b):
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"first difference at {i}: {x} vs {y}"
        return f"lengths {len(a)} and {len(b)}"
    return f"{a} vs {b}"
