// The client's frame codec and the admin API's parsers, without a server: what the client sends,
// how it reads every server frame of docs/protocol.md, and how errors become Statuses.
#include "client/herald_client.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "client/admin_client.h"

namespace herald::client {
namespace {

namespace json = boost::json;

constexpr char kMessageJson[] =
    R"({"conversation_id":"g1","seq":7,"kind":"user","sender":"alice","sender_device":"a-phone",)"
    R"("client_message_id":"m-1","time_ms":1764150000000,"body":"hi","edited":false,)"
    R"("edited_ms":0,"deleted":false})";

TEST(ParseServerUrl, SchemesChooseTlsAndTheDefaultPort) {
  const ServerUrl wss = parse_server_url("wss://chat.example.com").value();
  EXPECT_EQ(wss.host, "chat.example.com");
  EXPECT_EQ(wss.port, kDefaultTlsPort);
  EXPECT_TRUE(wss.tls);
  const ServerUrl https = parse_server_url("https://127.0.0.1:7400/").value();
  EXPECT_EQ(https.host, "127.0.0.1");
  EXPECT_EQ(https.port, 7400);
  EXPECT_TRUE(https.tls);
  const ServerUrl ws = parse_server_url("ws://localhost").value();
  EXPECT_EQ(ws.port, kDefaultPlainPort);
  EXPECT_FALSE(ws.tls);
  EXPECT_FALSE(parse_server_url("http://h:80").value().tls);
}

TEST(ParseServerUrl, AnIpv6LiteralLosesItsBrackets) {
  const ServerUrl url = parse_server_url("wss://[::1]:8443").value();
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 8443);
  EXPECT_EQ(parse_server_url("wss://[::1]").value().port, kDefaultTlsPort);
}

TEST(ParseServerUrl, RefusesWhatIsNotAHostAndPort) {
  for (const char* bad : {"chat.example.com:443", "ftp://h", "wss://", "wss://:443",
                          "wss://h:", "wss://h:0", "wss://h:65536", "wss://h:44x", "wss://h/v1/ws",
                          "wss://u@h", "wss://h?x=1", "wss://[::1", "wss://[::1]x", "WSS://h"}) {
    EXPECT_EQ(parse_server_url(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(EncodeRequest, PutsTypeAndIdFirstThenTheFields) {
  const std::string frame = encode_request("send", "c-1", {{"conversation_id", "g1"}, {"seq", 3}});
  EXPECT_EQ(frame, R"({"type":"send","id":"c-1","conversation_id":"g1","seq":3})");
}

TEST(EncodeRequest, OmitsAnEmptyId) {
  EXPECT_EQ(encode_request("ping", "", {}), R"({"type":"ping"})");
}

TEST(ParseServerFrame, OkAnswerKeepsItsReAndFields) {
  auto frame = parse_server_frame(R"({"type":"ok","re":"c-4","seq":9,"existed":true})");
  ASSERT_TRUE(frame.ok()) << frame.status().to_string();
  ASSERT_TRUE(frame->is_answer);
  EXPECT_EQ(frame->answer.re, "c-4");
  EXPECT_TRUE(frame->answer.status.ok());
  ASSERT_NE(frame->fields, nullptr);
  EXPECT_EQ(frame->fields->at("seq").as_int64(), 9);
}

TEST(ParseServerFrame, ErrorAnswerBecomesAStatusNamingTheCode) {
  auto frame = parse_server_frame(
      R"({"type":"error","re":"c-2","code":"not_member","message":"you are not a member"})");
  ASSERT_TRUE(frame.ok()) << frame.status().to_string();
  ASSERT_TRUE(frame->is_answer);
  EXPECT_EQ(frame->answer.status.code(), Code::kFailedPrecondition);
  EXPECT_EQ(frame->answer.status.message(), "not_member: you are not a member");
  EXPECT_EQ(protocol_error_code(frame->answer.status), "not_member");
}

TEST(ParseServerFrame, NullReIsNoRe) {
  auto frame = parse_server_frame(
      R"({"type":"error","re":null,"code":"malformed_json","message":"a frame is one JSON object"})");
  ASSERT_TRUE(frame.ok()) << frame.status().to_string();
  EXPECT_FALSE(frame->answer.re.has_value());
  EXPECT_EQ(frame->answer.status.code(), Code::kInvalidArgument);
}

TEST(ParseServerFrame, ChangeEventCarriesItsMessage) {
  const std::string text = std::string(R"({"type":"change","change":{"cursor":42,)") +
                           R"("kind":"message_new","conversation_id":"g1","seq":7,)" +
                           R"("actor":"alice","time_ms":5,"message":)" + kMessageJson + "}}";
  auto frame = parse_server_frame(text);
  ASSERT_TRUE(frame.ok()) << frame.status().to_string();
  ASSERT_FALSE(frame->is_answer);
  ASSERT_TRUE(frame->event.has_value());
  const Change* change = std::get_if<Change>(&*frame->event);
  ASSERT_NE(change, nullptr);
  EXPECT_EQ(change->cursor, 42U);
  EXPECT_EQ(change->kind, "message_new");
  ASSERT_TRUE(change->message.has_value());
  EXPECT_EQ(change->message->body, "hi");
  EXPECT_EQ(change->message->sender_device, "a-phone");
  EXPECT_EQ(change->message->time_ms, 1764150000000);
}

TEST(ParseServerFrame, ReadCursorChangeCarriesItsDevice) {
  auto frame = parse_server_frame(
      R"({"type":"change","change":{"cursor":3,"kind":"read_cursor","conversation_id":"g1",)"
      R"("seq":2,"actor":"bob","time_ms":5,"device_id":"b-phone"}})");
  ASSERT_TRUE(frame.ok()) << frame.status().to_string();
  const Change& change = std::get<Change>(*frame->event);
  EXPECT_EQ(change.device_id, "b-phone");
  EXPECT_FALSE(change.message.has_value());
}

TEST(ParseServerFrame, DeliveryReceiptNamesWhoReceivedHowFar) {
  auto frame = parse_server_frame(
      R"({"type":"change","change":{"cursor":6,"kind":"delivery_receipt",)"
      R"("conversation_id":"direct:alice:bob","seq":2,"actor":"bob","time_ms":5}})");
  ASSERT_TRUE(frame.ok()) << frame.status().to_string();
  const Change& change = std::get<Change>(*frame->event);
  EXPECT_EQ(change.kind, kDeliveryReceiptKind);
  EXPECT_EQ(change.actor, "bob");
  EXPECT_EQ(change.seq, 2U);
  EXPECT_EQ(change.conversation_id, "direct:alice:bob");
  EXPECT_FALSE(change.message.has_value());
}

TEST(ParseServerFrame, TypingAndPresenceEvents) {
  auto typing = parse_server_frame(
      R"({"type":"typing","conversation_id":"g1","user_id":"bob","active":true})");
  ASSERT_TRUE(typing.ok()) << typing.status().to_string();
  EXPECT_TRUE(std::get<TypingEvent>(*typing->event).active);
  auto presence =
      parse_server_frame(R"({"type":"presence","user_id":"bob","online":false,"last_seen_ms":12})");
  ASSERT_TRUE(presence.ok()) << presence.status().to_string();
  EXPECT_EQ(std::get<PresenceEvent>(*presence->event).last_seen_ms, 12);
}

TEST(ParseServerFrame, RefusesWhatIsNotTheProtocol) {
  EXPECT_EQ(parse_server_frame("[1,2]").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_server_frame("{nope").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_server_frame(R"({"type":"surprise"})").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_server_frame(R"({"re":"c-1"})").status().code(), Code::kCorruption);
  // A change whose seq is a string.
  EXPECT_EQ(parse_server_frame(R"({"type":"change","change":{"cursor":1,"kind":"k",)"
                               R"("conversation_id":"g","seq":"7","actor":"a","time_ms":1}})")
                .status()
                .code(),
            Code::kCorruption);
}

TEST(ParseMessage, RefusesANegativeSeq) {
  json::value v = json::parse(kMessageJson);
  v.as_object()["seq"] = -1;
  EXPECT_EQ(parse_message(v).status().code(), Code::kCorruption);
}

TEST(ParseConversation, ReadsItsMembers) {
  auto conv = parse_conversation(json::parse(
      R"({"conversation_id":"direct:alice:bob","kind":"direct","title":"","created_by":"alice",)"
      R"("created_ms":1,"last_seq":0,"members":[{"user_id":"alice","role":"owner","joined_ms":1},)"
      R"({"user_id":"bob","role":"member","joined_ms":1}]})"));
  ASSERT_TRUE(conv.ok()) << conv.status().to_string();
  ASSERT_EQ(conv->members.size(), 2U);
  EXPECT_EQ(conv->members[1].user_id, "bob");
  EXPECT_EQ(conv->members[0].role, "owner");
}

TEST(StatusOfError, MapsRetryableCodes) {
  EXPECT_EQ(status_of_error("unavailable", "no leader").code(), Code::kUnavailable);
  EXPECT_EQ(status_of_error("timeout", "late").code(), Code::kTimeout);
  EXPECT_EQ(status_of_error("too_large", "big").code(), Code::kResourceExhausted);
  EXPECT_EQ(status_of_error("not_found", "gone").code(), Code::kNotFound);
  EXPECT_EQ(status_of_error("something_new", "?").code(), Code::kIOError);
}

TEST(ProtocolErrorCode, IsEmptyForTheClientsOwnErrors) {
  EXPECT_EQ(protocol_error_code(Status::ok_status()), "");
  EXPECT_EQ(protocol_error_code(Status::timeout("no answer to the \"send\" request c-1")), "");
  EXPECT_EQ(protocol_error_code(Status::io_error("the connection failed: reset")), "");
  EXPECT_EQ(protocol_error_code(status_of_error("read_beyond_last_seq", "seq 9 > 3")),
            "read_beyond_last_seq");
}

TEST(AdminParsers, TimelineListsRecipientsDevicesAndHistory) {
  const std::string body =
      std::string(R"({"message":)") + kMessageJson +
      R"(,"recipients":[{"user_id":"bob","workflow_id":"delivery/g1/7/bob",)"
      R"("state":"push_dispatched","status":"running","devices":[)"
      R"({"device_id":"b-phone","state":"pushed","delivered_ms":0,"read_ms":0}],)"
      R"("escalated":false,"emailed":false,"history":[)"
      R"({"seq":1,"time_ms":5,"kind":"started","name":""}]}]})";
  auto timeline = parse_timeline(body);
  ASSERT_TRUE(timeline.ok()) << timeline.status().to_string();
  const RecipientTimeline* bob = timeline->recipient("bob");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->state, "push_dispatched");
  ASSERT_EQ(bob->devices.size(), 1U);
  EXPECT_EQ(bob->devices[0].state, "pushed");
  ASSERT_EQ(bob->history.size(), 1U);
  EXPECT_EQ(bob->history[0].kind, "started");
  EXPECT_EQ(timeline->recipient("carol"), nullptr);
}

TEST(AdminParsers, MissingWorkflowHasNoState) {
  const std::string body = std::string(R"({"message":)") + kMessageJson +
                           R"(,"recipients":[{"user_id":"bob","workflow_id":"w","state":null}]})";
  auto timeline = parse_timeline(body);
  ASSERT_TRUE(timeline.ok()) << timeline.status().to_string();
  EXPECT_EQ(timeline->recipients.at(0).state, "");
}

TEST(AdminParsers, UserInfoListsDevices) {
  auto user = parse_user_info(
      R"({"user":{"user_id":"bob","display_name":"Bob","email":"","created_ms":3,"devices":["b"]},)"
      R"("devices":[{"device_id":"b","platform":"ios","push_provider":"apns",)"
      R"("has_push_token":true,"created_ms":3}]})");
  ASSERT_TRUE(user.ok()) << user.status().to_string();
  EXPECT_EQ(user->display_name, "Bob");
  ASSERT_EQ(user->devices.size(), 1U);
  EXPECT_TRUE(user->devices[0].has_push_token);
}

TEST(StatusOfReply, ReadsHeraldsErrorBody) {
  const Status s =
      status_of_reply({409, R"({"error":{"code":"conflict","message":"user bob exists"}})"});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(protocol_error_code(s), "conflict");
}

TEST(StatusOfReply, QuotesABodyThatIsNotHeralds) {
  const Status s = status_of_reply({502, "bad gateway"});
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_EQ(s.message(), "http_502: bad gateway");
  EXPECT_EQ(protocol_error_code(s), "http_502");
}

TEST(EncodePathSegment, EscapesReservedBytes) {
  EXPECT_EQ(encode_path_segment("direct:alice:bob"), "direct%3Aalice%3Abob");
  EXPECT_EQ(encode_path_segment("a b/c"), "a%20b%2Fc");
  EXPECT_EQ(encode_path_segment("plain-id_1.x~"), "plain-id_1.x~");
}

}  // namespace
}  // namespace herald::client
