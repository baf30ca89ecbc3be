"""The chaos test's checks (tests/chaos_checks.py) find what they are meant to find: a clean
history passes, and each broken one is reported. Standard library only.

Usage: chaos_checks_test.py
"""

import copy
import unittest

import chaos_checks as checks

CONV = "direct:alice:bob"


def message(cursor, seq, sender, device, cmid):
    return {"cursor": cursor, "kind": "message_new", "conversation_id": CONV, "seq": seq,
            "actor": sender, "message": {"seq": seq, "sender": sender, "sender_device": device,
                                         "client_message_id": cmid}}


def bob_stream():
    """Bob's stream: the conversation, two messages of Alice's, one of his, a read."""
    return [
        {"cursor": 1, "kind": "conversation_created", "conversation_id": CONV, "seq": 0},
        message(2, 1, "alice", "alice-phone", "a-1"),
        message(3, 2, "alice", "alice-phone", "a-2"),
        {"cursor": 4, "kind": "read_cursor", "conversation_id": CONV, "seq": 2,
         "device_id": "bob-laptop"},
        message(5, 3, "bob", "bob-laptop", "b-1"),
    ]


class CheckStreamTest(unittest.TestCase):
    def test_a_clean_stream_passes(self):
        self.assertEqual(checks.check_stream("bob", bob_stream(), {CONV: 3}), [])

    def test_a_message_stored_twice_is_found(self):
        stream = bob_stream()
        stream.append(message(6, 4, "alice", "alice-phone", "a-2"))
        problems = checks.check_stream("bob", stream, {CONV: 4})
        self.assertTrue(any("twice" in p for p in problems), problems)

    def test_a_missing_seq_is_found(self):
        stream = [c for c in bob_stream() if c.get("seq") != 2 or c["kind"] != "message_new"]
        for i, c in enumerate(stream):
            c["cursor"] = i + 1
        problems = checks.check_stream("bob", stream, {CONV: 3})
        self.assertTrue(any("missing [2]" in p for p in problems), problems)

    def test_a_cursor_gap_is_found(self):
        stream = bob_stream()
        del stream[1]
        self.assertTrue(checks.check_stream("bob", stream, {CONV: 3}))

    def test_a_read_cursor_going_back_is_found(self):
        stream = bob_stream()
        stream.append({"cursor": 6, "kind": "read_cursor", "conversation_id": CONV, "seq": 1})
        problems = checks.check_stream("bob", stream, {CONV: 3})
        self.assertTrue(any("went from 3 to 1" in p for p in problems), problems)


class CheckSendsTest(unittest.TestCase):
    def setUp(self):
        self.streams = {"bob": bob_stream(), "alice": copy.deepcopy(bob_stream())}
        self.members = {CONV: ["alice", "bob"]}

    def test_acknowledged_sends_found_pass(self):
        sends = {(CONV, "alice-phone", "a-1"): [1], (CONV, "alice-phone", "a-2"): [2, 2]}
        self.assertEqual(checks.check_sends(sends, self.streams, self.members, []), [])

    def test_a_lost_acknowledged_send_is_found(self):
        sends = {(CONV, "alice-phone", "a-9"): [4]}
        problems = checks.check_sends(sends, self.streams, self.members, [])
        self.assertEqual(len(problems), 2, problems)

    def test_a_send_answered_with_two_seqs_is_found(self):
        sends = {(CONV, "alice-phone", "a-1"): [1, 2]}
        problems = checks.check_sends(sends, self.streams, self.members, [])
        self.assertTrue(any("different seqs" in p for p in problems), problems)

    def test_another_message_at_the_acknowledged_seq_is_found(self):
        sends = {(CONV, "alice-phone", "a-1"): [2]}
        self.assertTrue(checks.check_sends(sends, self.streams, self.members, []))

    def test_sends_in_seq_order_pass(self):
        sends = {(CONV, "alice-phone", "a-1"): [1], (CONV, "alice-phone", "a-2"): [3]}
        self.assertEqual(checks.check_send_order(sends), [])

    def test_a_later_send_ordered_before_an_earlier_one_is_found(self):
        sends = {(CONV, "alice-phone", "a-1"): [2], (CONV, "alice-phone", "a-2"): [1]}
        self.assertEqual(len(checks.check_send_order(sends)), 1)

    def test_an_unanswered_send_is_found(self):
        key = (CONV, "alice-phone", "a-3")
        self.assertTrue(checks.check_sends({key: []}, self.streams, self.members, [key]))


class CheckMarksTest(unittest.TestCase):
    def test_marks_moving_forward_pass(self):
        self.assertEqual(checks.check_marks("ack", {("d", CONV): [(1, 1), (1, 3), (4, 4)]}), [])

    def test_a_mark_going_back_is_found(self):
        self.assertTrue(checks.check_marks("ack", {("d", CONV): [(3, 3), (1, 2)]}))

    def test_a_mark_below_what_was_asked_is_found(self):
        self.assertTrue(checks.check_marks("read", {("d", CONV): [(3, 2)]}))


class CheckLiveTest(unittest.TestCase):
    def test_the_whole_stream_received_passes(self):
        self.assertEqual(checks.check_live("bob-laptop", bob_stream(), bob_stream()), [])

    def test_a_change_received_twice_is_found(self):
        received = bob_stream()
        received.insert(2, received[1])
        self.assertTrue(checks.check_live("bob-laptop", received, bob_stream()))

    def test_a_device_that_stopped_short_is_found(self):
        problems = checks.check_live("bob-laptop", bob_stream()[:3], bob_stream())
        self.assertTrue(any("stopped at cursor 3 of 5" in p for p in problems), problems)

    def test_a_change_that_differs_from_sync_is_found(self):
        received = bob_stream()
        received[1] = message(2, 1, "alice", "alice-phone", "other")
        self.assertTrue(checks.check_live("bob-laptop", received, bob_stream()))


class ReadCursorTest(unittest.TestCase):
    def test_an_own_message_moves_the_read_cursor(self):
        self.assertEqual(checks.final_read_cursors("bob", bob_stream()), {CONV: 3})
        self.assertEqual(checks.final_read_cursors("alice", bob_stream()), {CONV: 2})

    def test_devices_that_disagree_are_found(self):
        received = {"bob-laptop": bob_stream(), "bob-phone": bob_stream()[:4]}
        problems = checks.check_read_convergence("bob", ["bob-laptop", "bob-phone"], received,
                                                 bob_stream(), {})
        self.assertEqual(len(problems), 1, problems)

    def test_a_read_answered_past_the_final_cursor_is_found(self):
        received = {"bob-laptop": bob_stream()}
        problems = checks.check_read_convergence("bob", ["bob-laptop"], received, bob_stream(),
                                                 {("bob-laptop", CONV): [(3, 4)]})
        self.assertEqual(len(problems), 1, problems)

    def test_chats_agreeing_with_the_stream_pass(self):
        self.assertEqual(checks.check_chats("alice", [(CONV, 3, 1)], bob_stream(), {CONV: 3}), [])

    def test_a_wrong_unread_count_is_found(self):
        self.assertTrue(checks.check_chats("bob", [(CONV, 3, 1)], bob_stream(), {CONV: 3}))


class CheckDeliveriesTest(unittest.TestCase):
    def timeline(self, *states):
        return {"message": {"sender": "alice"},
                "recipients": [{"user_id": u, "state": st} for u, st in states]}

    def test_confirmed_deliveries_pass(self):
        timelines = {(CONV, 1): self.timeline(("bob", "read_acknowledged"))}
        self.assertEqual(checks.check_deliveries(timelines, {CONV: ["alice", "bob"]}), [])

    def test_an_unconfirmed_delivery_is_found(self):
        timelines = {(CONV, 1): self.timeline(("bob", "push_dispatched"))}
        self.assertEqual(len(checks.check_deliveries(timelines, {CONV: ["alice", "bob"]})), 1)

    def test_a_missing_recipient_is_found(self):
        timelines = {(CONV, 1): self.timeline()}
        self.assertEqual(len(checks.check_deliveries(timelines, {CONV: ["alice", "bob"]})), 1)


class CompareTest(unittest.TestCase):
    def test_nodes_that_differ_are_found(self):
        other = bob_stream()[:4]
        problems = checks.check_same("bob's stream", {1: bob_stream(), 2: bob_stream(), 3: other})
        self.assertEqual(len(problems), 1, problems)

    def test_a_rewritten_history_is_found(self):
        later = bob_stream()
        later[2] = message(3, 2, "alice", "alice-phone", "rewritten")
        self.assertTrue(checks.check_prefix("bob", bob_stream()[:3], later))
        self.assertEqual(checks.check_prefix("bob", bob_stream()[:3], bob_stream()), [])


if __name__ == "__main__":
    unittest.main()
