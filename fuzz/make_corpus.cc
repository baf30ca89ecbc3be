// fuzz_make_corpus: writes the seed corpus of every fuzz target under fuzz/corpus/<target>/.
//
// Usage: fuzz_make_corpus DIR (normally fuzz/corpus). Every seed is built with Herald's own
// encoders where there is one (protobuf messages, sealed records, handshake proofs, a LogStore
// and a replica's state machines writing their records), so the seeds are valid inputs; a few
// near-valid ones (one field off) per target point the fuzzer at the refusals. Deterministic:
// running it twice writes the same bytes. Each target's file comment gives its input format.
#include <boost/json/object.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "crypto/jwt.h"
#include "fuzz/messaging_fixture.h"
#include "fuzz/peer_fixture.h"
#include "fuzz/push_fixture.h"
#include "messaging/delivery.h"
#include "messaging/domain.h"
#include "messaging/messaging.pb.h"
#include "rsm/apply_batch.h"
#include "rsm/rsm.pb.h"
#include "rsm/session.h"
#include "server/node_figures.h"
#include "server/peer_auth.h"
#include "server/peer_transport.h"
#include "storage/log_store.h"
#include "storage/mem_engine.h"
#include "storage/mem_log_fs.h"
#include "storage/segment_log.h"
#include "workflow/engine.h"
#include "workflow/workflow.pb.h"

namespace {

namespace fs = std::filesystem;
namespace messagingpb = herald::messagingpb;
namespace seed = herald::fuzz::messaging_seed;
namespace peer = herald::fuzz::peer;
using herald::put_fixed32_be;
using herald::put_fixed64_be;

// Depth of the nested-array seed: one level more than the gateway accepts.
constexpr std::size_t kTooDeepLevels = 17;
// Records of the state dump put in one snapshot chunk seed, at most.
constexpr std::size_t kChunkRecords = 24;
// Page size used to obtain a real chat-index page token.
constexpr std::size_t kTokenPageSize = 1;

class Writer {
 public:
  explicit Writer(fs::path root) : root_(std::move(root)) {}

  void write(std::string_view target, std::string_view name, std::string_view bytes) const {
    const fs::path dir = root_ / target;
    fs::create_directories(dir);
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    HERALD_ASSERT(out.good(), "the seed is written");
  }

 private:
  fs::path root_;
};

void put_u8(std::string& out, std::size_t v) {
  HERALD_ASSERT(v <= 0xff, "fits a u8 length");
  out.push_back(static_cast<char>(v));
}
void put_u16(std::string& out, std::size_t v) {
  HERALD_ASSERT(v <= 0xffff, "fits a u16 length");
  out.push_back(static_cast<char>(v >> 8U));
  out.push_back(static_cast<char>(v & 0xffU));
}
void put_short(std::string& out, std::string_view s) {
  put_u8(out, s.size());
  out.append(s);
}
void put_long(std::string& out, std::string_view s) {
  put_u16(out, s.size());
  out.append(s);
}

// ---------------------------------------------------------------- text targets

void gateway_frames(const Writer& w) {
  const std::string_view t = "gateway_frame";
  w.write(t, "auth.json",
          R"({"type":"auth","id":"c-1","user_id":"alice","device_id":"alice-phone",)"
          R"("token":"s3cret","since":0})");
  w.write(t, "send.json",
          R"({"type":"send","id":"c-2","conversation_id":"direct:alice:bob",)"
          R"("client_message_id":"m-1","body":"hello \u00e9\ud83d\ude00"})");
  w.write(t, "create_group.json",
          R"({"type":"conversation.create","id":"c-3","kind":"group","conversation_id":"team",)"
          R"("title":"Team","members":["bob","carol"]})");
  w.write(t, "role.json",
          R"({"type":"members.role","id":"c-4","conversation_id":"team","user_id":"bob",)"
          R"("role":"admin"})");
  w.write(t, "prefs.json",
          R"({"type":"prefs.set","id":"c-5","conversation_id":"team","muted":true,)"
          R"("push_enabled":false,"email_fallback":true,"email_delay_ms":60000})");
  w.write(t, "sync.json", R"({"type":"sync","id":"c-6","since":12,"limit":100})");
  w.write(t, "chats_page.json", R"({"type":"chats","limit":10,"page":"6d7861"})");
  w.write(t, "typing_relay.json", R"({"user_id":"alice","conversation_id":"team","active":true})");
  w.write(t, "presence_relay.json", R"({"user_id":"bob","online":false,"last_seen_ms":12})");
  // Near-valid.
  w.write(t, "negative_seq.json", R"({"type":"ack","conversation_id":"team","seq":-1})");
  w.write(t, "numeric_id.json", R"({"type":"ping","id":7})");
  w.write(t, "not_object.json", R"(["ping"])");
  w.write(t, "truncated.json", R"({"type":"read","conversation_id":"team","seq":)");
  w.write(t, "too_deep.json",
          R"({"type":"ping","x":)" + std::string(kTooDeepLevels, '[') +
              std::string(kTooDeepLevels, ']') + "}");
}

void client_frames(const Writer& w) {
  const std::string_view t = "client_frame";
  const std::string message =
      R"({"conversation_id":"g1","seq":7,"kind":"user","sender":"alice","sender_device":"a-phone",)"
      R"("client_message_id":"m-1","time_ms":1764150000000,"body":"hi","edited":false,)"
      R"("edited_ms":0,"deleted":false})";
  w.write(t, "ok_send.json",
          R"({"type":"ok","re":"c-4","seq":9,"existed":true,"server_time_ms":5})");
  w.write(t, "error.json",
          R"({"type":"error","re":"c-2","code":"not_member","message":"you are not a member"})");
  w.write(t, "error_rate_limited.json",
          R"({"type":"error","re":null,"code":"rate_limited","message":"too many",)"
          R"("retry_after_ms":250})");
  w.write(t, "change_message.json",
          R"({"type":"change","change":{"cursor":42,"kind":"message_new","conversation_id":"g1",)"
          R"("seq":7,"actor":"alice","time_ms":5,"message":)" +
              message + "}}");
  w.write(t, "change_read_cursor.json",
          R"({"type":"change","change":{"cursor":3,"kind":"read_cursor","conversation_id":"g1",)"
          R"("seq":2,"actor":"bob","time_ms":5,"device_id":"b-phone"}})");
  w.write(t, "typing.json",
          R"({"type":"typing","conversation_id":"g1","user_id":"bob","active":true})");
  w.write(t, "presence.json",
          R"({"type":"presence","user_id":"bob","online":false,"last_seen_ms":12})");
  w.write(t, "ok_sync.json",
          R"({"type":"ok","re":"c-9","changes":[{"cursor":1,"kind":"members_added",)"
          R"("conversation_id":"g1","actor":"alice","time_ms":1,"users":["bob"]}],)"
          R"("cursor":1,"has_more":false})");
  w.write(t, "ok_conversation.json",
          R"({"type":"ok","re":"c-3","conversation":{"conversation_id":"direct:alice:bob",)"
          R"("kind":"direct","title":"","created_by":"alice","created_ms":1,"last_seq":0,)"
          R"("members":[{"user_id":"alice","role":"owner","joined_ms":1},)"
          R"({"user_id":"bob","role":"member","joined_ms":1}]}})");
  w.write(t, "admin_timeline.json",
          R"({"message":)" + message +
              R"(,"recipients":[{"user_id":"bob","workflow_id":"delivery/g1/7/bob",)"
              R"("state":"push_dispatched","status":"running","devices":[)"
              R"({"device_id":"b-phone","state":"pushed","delivered_ms":0,"read_ms":0}],)"
              R"("escalated":false,"emailed":false,"history":[)"
              R"({"seq":1,"time_ms":5,"kind":"started","name":""}]}]})");
  w.write(t, "admin_user.json",
          R"({"user":{"user_id":"bob","display_name":"Bob","email":"","created_ms":3,)"
          R"("devices":["b"]},"devices":[{"device_id":"b","platform":"ios",)"
          R"("push_provider":"apns","has_push_token":true,"created_ms":3}]})");
  // Near-valid.
  w.write(t, "seq_as_string.json",
          R"({"type":"change","change":{"cursor":1,"kind":"k","conversation_id":"g","seq":"7",)"
          R"("actor":"a","time_ms":1}})");
  w.write(t, "unknown_type.json", R"({"type":"surprise"})");
}

void http_requests(const Writer& w) {
  const std::string_view t = "http_request";
  w.write(t, "health.http", "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:7400\r\n\r\n");
  w.write(t, "kv_put.http",
          "PUT /v1/kv/greeting HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t0ken\r\n"
          "Content-Length: 5\r\n\r\nhello");
  w.write(t, "admin_query.http",
          "GET /v1/admin/conversations/direct%3Aalice%3Abob/messages/1?consistency=stale&a=%20b+c"
          "&flag HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t0ken\r\n\r\n");
  w.write(t, "workflow_chunked.http",
          "POST /v1/workflows HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
          "Content-Type: application/json\r\n\r\n"
          "1a\r\n{\"type\":\"demo.pipeline\",\"\r\n"
          "14\r\nid\":\"o-1\",\"input\":\"3\"}\r\n0\r\n\r\n");
  w.write(t, "websocket_upgrade.http",
          "GET /v1/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  w.write(t, "http10_keepalive.http",
          "DELETE /v1/kv/a%2Fb HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  // Near-valid.
  w.write(t, "bad_escape.http", "GET /v1/kv/%zz?x=%4 HTTP/1.1\r\nHost: h\r\n\r\n");
  w.write(t, "short_body.http",
          "POST /v1/workflows HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\n{\"type\":");
  w.write(t, "body_too_large.http",
          "PUT /v1/kv/big HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\nx");
}

void serve_configs(const Writer& w) {
  const std::string_view t = "serve_config";
  w.write(t, "full.toml",
          "id = 1\n"
          "data = \"./herald-data\"\n"
          "client = \"127.0.0.1:7400\"\n"
          "peer = \"127.0.0.1:7401\"\n"
          "peers = \"1=127.0.0.1:7401,2=127.0.0.1:7411,3=127.0.0.1:7421\"\n"
          "cluster = \"herald\"\n"
          "log_level = \"info\"\n"
          "tick_ms = 10\n"
          "election_ticks = 6\n"
          "heartbeat_ticks = 2\n"
          "admin_token = \"t0ken\"\n"
          "push_journal = \"push.jsonl\"\n"
          "email_journal = \"email.jsonl\"\n"
          "cluster_secret_file = \"/etc/herald/cluster-secret\"\n"
          "insecure_peers = false\n"
          "[devices]\n"
          "requests_per_s = 100\n"
          "request_burst = 400\n"
          "auths_per_s_per_address = 50.5\n"
          "auth_burst_per_address = 500\n"
          "max_connections_per_address = 1024\n"
          "max_sessions_per_device = 4\n"
          "auth_deadline_ms = 10000\n"
          "typing_relay_interval_ms = 2000\n");
  w.write(t, "peers_table.toml",
          "id = 2\ninsecure_peers = true\n[peers]\n1 = \"10.0.0.1:7401\"\n2 = \"10.0.0.2:7401\"\n");
  w.write(t, "single.toml", "id = 1\npeer = \"127.0.0.1:7401\"\n");
  w.write(t, "peers_flag.txt", "1=127.0.0.1:7401,2=[::1]:7411");
  // Near-valid.
  w.write(t, "negative_count.toml", "id = 1\n[devices]\nrequest_burst = -1\n");
  w.write(t, "huge_tick.toml", "id = 1\ntick_ms = 4294967296\n");
  w.write(t, "duplicate_peer.txt", "1=a:1,1=b:2");
  w.write(t, "bad_syntax.toml", "id = \n[devices\n");
}

// ---------------------------------------------------------------- peer frames

std::string frame(const herald::rsmpb::PeerEnvelope& envelope) {
  const std::string payload = envelope.SerializeAsString();
  std::string out;
  put_fixed32_be(out, static_cast<std::uint32_t>(payload.size()));
  put_fixed32_be(out, herald::crc32c(payload));
  return out + payload;
}

herald::rsmpb::PeerEnvelope envelope(herald::raft::NodeId from, herald::raft::NodeId to) {
  herald::rsmpb::PeerEnvelope e;
  e.set_from(from);
  e.set_to(to);
  return e;
}

std::string handshake() {
  auto hello = envelope(peer::kCaller, peer::kAcceptor);
  hello.mutable_hello()->set_from(peer::kCaller);
  hello.mutable_hello()->set_cluster(std::string(peer::kCluster));
  hello.mutable_hello()->set_nonce(std::string(peer::kCallerNonce));
  auto proof = envelope(peer::kCaller, peer::kAcceptor);
  proof.mutable_hello_proof()->set_proof(herald::server::handshake_proof(
      herald::server::HandshakeRole::kCaller, peer::kSecret, peer::transcript()));
  return frame(hello) + frame(proof);
}

void peer_frames(const Writer& w) {
  const std::string_view t = "peer_frame";
  auto reply = envelope(peer::kAcceptor, peer::kCaller);
  reply.mutable_hello_reply()->set_from(peer::kAcceptor);
  reply.mutable_hello_reply()->set_nonce(std::string(peer::kAcceptorNonce));
  reply.mutable_hello_reply()->set_proof(herald::server::handshake_proof(
      herald::server::HandshakeRole::kAcceptor, peer::kSecret, peer::transcript()));
  w.write(t, "hello_reply.bin", frame(reply));

  auto append = envelope(peer::kCaller, peer::kAcceptor);
  herald::raftpb::Message* raft = append.mutable_raft();
  raft->set_type(herald::raftpb::MSG_APP);
  raft->set_from(peer::kCaller);
  raft->set_to(peer::kAcceptor);
  raft->set_term(3);
  raft->set_log_term(2);
  raft->set_index(7);
  raft->set_commit(7);
  herald::raftpb::Entry* entry = raft->add_entries();
  entry->set_index(8);
  entry->set_term(3);
  entry->set_data("command");
  w.write(t, "handshake_then_append.bin", handshake() + frame(append));

  auto chunk = envelope(peer::kCaller, peer::kAcceptor);
  chunk.mutable_chunk()->set_stream_id(1);
  chunk.mutable_chunk()->set_seq(0);
  chunk.mutable_chunk()->mutable_metadata()->set_index(100);
  chunk.mutable_chunk()->mutable_metadata()->set_term(3);
  chunk.mutable_chunk()->set_data(herald::seal_record(""));
  chunk.mutable_chunk()->set_last(true);
  herald::raftpb::Message* snap = chunk.mutable_chunk()->mutable_snap_message();
  snap->set_type(herald::raftpb::MSG_SNAP);
  snap->set_from(peer::kCaller);
  snap->set_to(peer::kAcceptor);
  auto report = envelope(peer::kCaller, peer::kAcceptor);
  report.mutable_report()->set_id(peer::kCaller);
  report.mutable_report()->set_role("leader");
  report.mutable_report()->set_client_address("127.0.0.1:7410");
  auto typing = envelope(peer::kCaller, peer::kAcceptor);
  typing.mutable_ephemeral()->set_kind("typing");
  typing.mutable_ephemeral()->set_payload(R"({"user_id":"a","conversation_id":"g","active":true})");
  w.write(t, "handshake_then_chunk_report_ephemeral.bin",
          handshake() + frame(chunk) + frame(report) + frame(typing));

  herald::server::NodeFigures own;
  own.id = peer::kCaller;
  own.fsync = {40, 900, 2'500, 3'000};
  own.commit = {12, 4'000, 9'000, 9'500};
  own.apply = {40, 150, 700, 1'200};
  own.devices = 17;
  own.leader_changes = 2;
  auto figures = envelope(peer::kCaller, peer::kAcceptor);
  *figures.mutable_figures() = herald::server::encode_node_figures(own);
  auto disordered = figures;
  disordered.mutable_figures()->mutable_commit()->set_p50_us(10'000);  // above its p99
  w.write(t, "handshake_then_figures.bin", handshake() + frame(figures) + frame(disordered));

  // Near-valid: a forged sender after the handshake, a Hello for another cluster, a bad CRC.
  auto forged = append;
  forged.mutable_raft()->set_from(peer::kOtherPeer);
  w.write(t, "handshake_then_forged.bin", handshake() + frame(forged));
  auto other_cluster = envelope(peer::kCaller, peer::kAcceptor);
  other_cluster.mutable_hello()->set_from(peer::kCaller);
  other_cluster.mutable_hello()->set_cluster("other");
  other_cluster.mutable_hello()->set_nonce(std::string(peer::kCallerNonce));
  w.write(t, "hello_other_cluster.bin", frame(other_cluster));
  std::string bad_crc = handshake();
  bad_crc[herald::server::kPeerFrameHeaderBytes - 1] ^= 1;
  w.write(t, "bad_crc.bin", bad_crc);
}

// ---------------------------------------------------------------- log store

// The log_store input for what `engine` holds in Space::kLog and Space::kMeta.
std::string dump_log(const herald::storage::MemEngine& engine) {
  namespace storage = herald::storage;
  std::string out;
  for (const storage::Space space : {storage::Space::kLog, storage::Space::kMeta}) {
    for (auto it = engine.scan(space, "", ""); it->valid(); it->next()) {
      std::string_view payload;
      HERALD_ASSERT(herald::open_record(it->value(), payload), "LogStore seals its records");
      if (space == storage::Space::kLog) {
        put_u8(out, 0);
        out.append(it->key());
      } else if (it->key() == storage::kHardStateKey) {
        put_u8(out, 1);
      } else {
        put_u8(out, 2);
      }
      put_long(out, payload);
    }
  }
  return out;
}

herald::raftpb::Entry log_entry(herald::raft::Index index, herald::raft::Term term) {
  herald::raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  if (index % 3 == 0) {
    herald::raftpb::ConfChange change;
    change.set_type(herald::raftpb::CONF_CHANGE_ADD_LEARNER);
    change.set_node_id(4);
    change.set_context("127.0.0.1:7431");
    e.set_type(herald::raftpb::ENTRY_CONF_CHANGE);
    e.set_data(change.SerializeAsString());
  } else {
    e.set_data("command " + std::to_string(index));
  }
  return e;
}

void log_stores(const Writer& w) {
  namespace storage = herald::storage;
  const std::string_view t = "log_store";
  storage::MemEngine engine;
  auto store = storage::LogStore::open(&engine);
  HERALD_ASSERT(store.ok(), "an empty engine opens");
  std::vector<herald::raftpb::Entry> entries;
  for (herald::raft::Index i = 1; i <= 6; ++i) entries.push_back(log_entry(i, 1 + i / 3));
  herald::raftpb::HardState hs;
  hs.set_term(3);
  hs.set_vote(1);
  hs.set_commit(5);
  HERALD_ASSERT((*store)->save(hs, std::nullopt, entries, true).ok(), "saves");
  w.write(t, "six_entries.bin", dump_log(engine));

  herald::raftpb::SnapshotMetadata snapshot;
  snapshot.set_index(4);
  snapshot.set_term(2);
  (*store)->set_snapshot_metadata(snapshot);
  HERALD_ASSERT((*store)->compact(4).ok(), "compacts");
  w.write(t, "compacted.bin", dump_log(engine));

  storage::MemEngine snapshot_only;
  auto fresh = storage::LogStore::open(&snapshot_only);
  HERALD_ASSERT(fresh.ok(), "an empty engine opens");
  snapshot.set_index(100);
  snapshot.set_term(7);
  hs.set_commit(100);
  HERALD_ASSERT((*fresh)->save(hs, snapshot, {}, true).ok(), "saves a snapshot");
  w.write(t, "snapshot_only.bin", dump_log(snapshot_only));

  // Near-valid: a gap in the log; a last entry that holds another index.
  std::string gap = dump_log(engine);
  put_u8(gap, 0);
  std::string far_key;
  put_fixed64_be(far_key, 9);
  gap += far_key;
  put_long(gap, log_entry(9, 3).SerializeAsString());
  w.write(t, "gap.bin", gap);
  std::string wrong_index;
  put_u8(wrong_index, 0);
  std::string key;
  put_fixed64_be(key, 1);
  wrong_index += key;
  put_long(wrong_index, log_entry(2, 1).SerializeAsString());
  w.write(t, "wrong_index.bin", wrong_index);
}

// ---------------------------------------------------------------- segment log

// The segment_log input for the segment files `fs` holds.
std::string dump_segments(const herald::storage::MemLogFs& fs, std::uint64_t segments,
                          std::uint64_t first = 1) {
  std::string out;
  put_fixed64_be(out, first);
  put_u8(out, segments);
  for (std::uint64_t seq = first; seq < first + segments; ++seq) {
    put_long(out, fs.contents(herald::storage::segment_name(seq)));
  }
  return out;
}

void segment_logs(const Writer& w) {
  namespace storage = herald::storage;
  const std::string_view t = "segment_log";
  // As fuzz/segment_log_fuzz.cc's kFuzzSegmentBytes.
  const storage::SegmentLogOptions options{1024};
  storage::MemLogFs fs;
  auto log = storage::SegmentLog::open(&fs, options);
  HERALD_ASSERT(log.ok(), "an empty directory opens");
  w.write(t, "empty.bin", dump_segments(fs, 1));
  herald::raftpb::HardState hs;
  hs.set_term(2);
  hs.set_vote(1);
  for (herald::raft::Index i = 1; i <= 30; ++i) {
    hs.set_commit(i - 1);
    HERALD_ASSERT((*log)->save(hs, std::nullopt, {log_entry(i, 1 + i / 10)}, i % 4 != 0).ok(),
                  "saves");
  }
  HERALD_ASSERT((*log)->segment_count() >= 2, "30 entries span segments of 1 KiB");
  w.write(t, "two_segments.bin", dump_segments(fs, (*log)->segment_count()));
  // A conflicting suffix, then an unsynced batch cut in its middle (a torn tail).
  std::vector<herald::raftpb::Entry> conflict{log_entry(28, 4), log_entry(29, 4)};
  HERALD_ASSERT((*log)->save(std::nullopt, std::nullopt, conflict, true).ok(), "saves");
  const std::uint64_t segments = (*log)->segment_count();
  const std::string before = fs.contents(storage::segment_name(segments));
  HERALD_ASSERT((*log)->save(hs, std::nullopt, {log_entry(30, 4), log_entry(31, 4)}, false).ok(),
                "saves");
  HERALD_ASSERT((*log)->segment_count() == segments, "the batch fits the last segment");
  w.write(t, "conflict_then_unsynced.bin", dump_segments(fs, segments));
  std::string torn = fs.contents(storage::segment_name(segments));
  std::size_t end = torn.size();
  while (end > 0 && torn[end - 1] == before[end - 1]) --end;
  torn.replace(end - 10, 10, before, end - 10, 10);
  storage::MemLogFs torn_fs;
  for (std::uint64_t seq = 1; seq <= segments; ++seq) {
    const std::string name = storage::segment_name(seq);
    torn_fs.put_durable(name, seq == segments ? torn : fs.contents(name));
  }
  w.write(t, "torn_tail.bin", dump_segments(torn_fs, segments));
  // A snapshot that restarts the log, then compaction of every older segment.
  herald::raftpb::SnapshotMetadata snapshot;
  snapshot.set_index(200);
  snapshot.set_term(5);
  hs.set_term(5);
  hs.set_commit(200);
  HERALD_ASSERT((*log)->save(hs, snapshot, {log_entry(201, 5)}, true).ok(), "saves a snapshot");
  HERALD_ASSERT((*log)->compact(200).ok(), "compacts");
  w.write(t, "snapshot_then_compacted.bin",
          dump_segments(fs, (*log)->segment_count(), (*log)->first_segment_seq()));
}

// ---------------------------------------------------------------- the messaging domain

using Step = std::pair<std::uint8_t, std::string>;  // selector, payload

Step m(const messagingpb::MessagingCommand& c, std::uint8_t seconds = 1) {
  return {static_cast<std::uint8_t>(seconds << 1U), c.SerializeAsString()};
}

messagingpb::MessagingCommand user(std::string_view id) {
  messagingpb::MessagingCommand c;
  c.mutable_create_user()->set_user_id(std::string(id));
  c.mutable_create_user()->set_display_name("User " + std::string(id));
  c.mutable_create_user()->set_email(std::string(id) + "@example.com");
  return c;
}

messagingpb::MessagingCommand device(std::string_view user_id) {
  messagingpb::MessagingCommand c;
  auto* d = c.mutable_create_device();
  d->set_user_id(std::string(user_id));
  d->set_device_id(std::string(user_id) + "-phone");
  d->set_platform("ios");
  d->set_credential_sha256(std::string(herald::messaging::kCredentialBytes, '\x5a'));
  return c;
}

messagingpb::MessagingCommand send(std::string_view conversation, std::string_view from,
                                   std::string_view client_id, std::string_view body) {
  messagingpb::MessagingCommand c;
  auto* s = c.mutable_send_message();
  s->set_conversation_id(std::string(conversation));
  s->set_sender_user_id(std::string(from));
  s->set_sender_device_id(std::string(from) + "-phone");
  s->set_client_message_id(std::string(client_id));
  s->set_body(std::string(body));
  return c;
}

std::vector<Step> users_and_devices() {
  std::vector<Step> steps;
  for (const std::string_view u : seed::kUsers) {
    steps.push_back(m(user(u)));
    steps.push_back(m(device(u)));
  }
  messagingpb::MessagingCommand push;
  push.mutable_set_push_token()->set_user_id("bob");
  push.mutable_set_push_token()->set_device_id("bob-phone");
  push.mutable_set_push_token()->set_push_provider("apns");
  push.mutable_set_push_token()->set_push_token("token-bob");
  steps.push_back(m(push));
  return steps;
}

std::vector<Step> direct_chat() {
  std::vector<Step> steps = users_and_devices();
  messagingpb::MessagingCommand direct;
  direct.mutable_create_conversation()->set_user_id("alice");
  direct.mutable_create_conversation()->set_kind(messagingpb::DIRECT);
  direct.mutable_create_conversation()->add_member_user_ids("bob");
  steps.push_back(m(direct));
  steps.push_back(m(send(seed::kConversation, "alice", "m-1", "hello bob")));
  steps.push_back(m(send(seed::kConversation, "bob", "m-2", "hi alice")));
  messagingpb::MessagingCommand ack;
  ack.mutable_ack_delivery()->set_user_id("bob");
  ack.mutable_ack_delivery()->set_device_id("bob-phone");
  ack.mutable_ack_delivery()->set_conversation_id(std::string(seed::kConversation));
  ack.mutable_ack_delivery()->set_seq(1);
  steps.push_back(m(ack));
  messagingpb::MessagingCommand marker;
  marker.mutable_set_read_marker()->set_user_id("bob");
  marker.mutable_set_read_marker()->set_device_id("bob-phone");
  marker.mutable_set_read_marker()->set_conversation_id(std::string(seed::kConversation));
  marker.mutable_set_read_marker()->set_seq(1);
  marker.mutable_set_read_marker()->set_idempotency_key("saga-1/1");
  steps.push_back(m(marker));
  messagingpb::MessagingCommand cursor;
  cursor.mutable_advance_read_cursor()->set_user_id("bob");
  cursor.mutable_advance_read_cursor()->set_conversation_id(std::string(seed::kConversation));
  cursor.mutable_advance_read_cursor()->set_seq(1);
  cursor.mutable_advance_read_cursor()->set_device_id("bob-phone");
  steps.push_back(m(cursor));
  messagingpb::MessagingCommand receipts;
  receipts.mutable_publish_read_receipts()->set_user_id("bob");
  receipts.mutable_publish_read_receipts()->set_conversation_id(std::string(seed::kConversation));
  receipts.mutable_publish_read_receipts()->set_up_to_seq(1);
  steps.push_back(m(receipts));
  return steps;
}

std::vector<Step> group_chat() {
  std::vector<Step> steps = users_and_devices();
  messagingpb::MessagingCommand group;
  auto* cc = group.mutable_create_conversation();
  cc->set_user_id("alice");
  cc->set_kind(messagingpb::GROUP);
  cc->set_conversation_id(std::string(seed::kGroup));
  cc->set_title("Team");
  cc->add_member_user_ids("bob");
  steps.push_back(m(group));
  messagingpb::MessagingCommand add;
  add.mutable_add_members()->set_user_id("alice");
  add.mutable_add_members()->set_conversation_id(std::string(seed::kGroup));
  add.mutable_add_members()->add_member_user_ids("carol");
  steps.push_back(m(add));
  messagingpb::MessagingCommand role;
  role.mutable_set_role()->set_user_id("alice");
  role.mutable_set_role()->set_conversation_id(std::string(seed::kGroup));
  role.mutable_set_role()->set_member_user_id("bob");
  role.mutable_set_role()->set_role(messagingpb::ADMIN);
  steps.push_back(m(role));
  messagingpb::MessagingCommand rename;
  rename.mutable_rename_conversation()->set_user_id("bob");
  rename.mutable_rename_conversation()->set_conversation_id(std::string(seed::kGroup));
  rename.mutable_rename_conversation()->set_title("The team");
  steps.push_back(m(rename));
  messagingpb::MessagingCommand prefs;
  prefs.mutable_set_preferences()->set_user_id("carol");
  prefs.mutable_set_preferences()->set_conversation_id(std::string(seed::kGroup));
  prefs.mutable_set_preferences()->set_email_fallback(true);
  prefs.mutable_set_preferences()->set_email_delay_ms(herald::messaging::kMinEmailDelayMs);
  steps.push_back(m(prefs));
  steps.push_back(m(send(seed::kGroup, "carol", "c-1", "hello team")));
  messagingpb::MessagingCommand edit;
  edit.mutable_edit_message()->set_user_id("carol");
  edit.mutable_edit_message()->set_conversation_id(std::string(seed::kGroup));
  edit.mutable_edit_message()->set_seq(1);
  edit.mutable_edit_message()->set_body("hello, team");
  steps.push_back(m(edit));
  messagingpb::MessagingCommand remove;
  remove.mutable_delete_message()->set_user_id("carol");
  remove.mutable_delete_message()->set_conversation_id(std::string(seed::kGroup));
  remove.mutable_delete_message()->set_seq(1);
  steps.push_back(m(remove));
  messagingpb::MessagingCommand leave;
  leave.mutable_leave_conversation()->set_user_id("alice");
  leave.mutable_leave_conversation()->set_conversation_id(std::string(seed::kGroup));
  steps.push_back(m(leave));
  messagingpb::MessagingCommand kick;
  kick.mutable_remove_member()->set_user_id("bob");
  kick.mutable_remove_member()->set_conversation_id(std::string(seed::kGroup));
  kick.mutable_remove_member()->set_member_user_id("carol");
  steps.push_back(m(kick));
  messagingpb::MessagingCommand unplug;
  unplug.mutable_remove_device()->set_user_id("carol");
  unplug.mutable_remove_device()->set_device_id("carol-phone");
  steps.push_back(m(unplug));
  return steps;
}

std::string encode_steps(const std::vector<Step>& steps) {
  std::string out;
  for (const auto& [selector, payload] : steps) {
    put_u8(out, selector);
    put_long(out, payload);
  }
  return out;
}

// Applies `steps` to `replica` as the messaging_apply target does.
void apply_steps(seed::Replica& replica, const std::vector<Step>& steps, std::int64_t& now_ms,
                 herald::raft::Index& index) {
  for (const auto& [selector, payload] : steps) {
    herald::rsm::ApplyBatch batch(&replica.engine);
    const auto result =
        replica.router.apply(++index, seed::command_of(selector, payload, now_ms), batch);
    if (result.code() != 0) {
      std::fprintf(stderr, "seed command %llu refused: %s\n",
                   static_cast<unsigned long long>(index), result.message().c_str());
      continue;
    }
    HERALD_ASSERT(replica.engine.write(batch.writes(), false).ok(), "MemEngine writes");
  }
}

// Timer fires and activity reports for what the delivery workflows of `replica` wait on, after
// `later_seconds`: the workflow commands the leader's runtime would propose.
std::vector<Step> runtime_steps(const seed::Replica& replica, std::int64_t now_ms,
                                std::uint8_t later_seconds) {
  namespace workflowpb = herald::workflowpb;
  std::vector<Step> steps;
  const std::int64_t due_ms = now_ms + std::int64_t{later_seconds} * seed::kStepMs;
  const auto timers = herald::workflow::Engine::due_timers(replica.engine, due_ms, 64);
  HERALD_ASSERT(timers.ok(), "timers read");
  workflowpb::WorkflowCommand fire;
  for (const workflowpb::TimerRecord& timer : *timers) {
    workflowpb::FireTimer* f = fire.mutable_fire_timers()->add_timers();
    f->set_workflow_id(timer.workflow_id());
    f->set_run_id(timer.run_id());
    f->set_timer_id(timer.timer_id());
    f->set_due_ms(timer.due_ms());
  }
  if (fire.fire_timers().timers().empty()) {
    return steps;
  }
  steps.emplace_back(static_cast<std::uint8_t>((later_seconds << 1U) | seed::kWorkflowBit),
                     fire.SerializeAsString());
  return steps;
}

std::vector<Step> activity_reports(const seed::Replica& replica) {
  namespace workflowpb = herald::workflowpb;
  std::vector<Step> steps;
  const auto activities = herald::workflow::Engine::dispatchable_activities(replica.engine, 64);
  HERALD_ASSERT(activities.ok(), "activities read");
  bool ok = true;
  for (const workflowpb::ActivityRecord& a : *activities) {
    workflowpb::WorkflowCommand report;
    auto* r = report.mutable_report();
    r->set_workflow_id(a.workflow_id());
    r->set_run_id(a.run_id());
    r->set_activity_id(a.activity_id());
    r->set_attempt(a.attempt());
    r->set_ok(ok);
    if (!ok) {
      r->set_error_type("unavailable");
      r->set_error_message("provider down");
    }
    ok = !ok;
    steps.emplace_back(static_cast<std::uint8_t>((1U << 1U) | seed::kWorkflowBit),
                       report.SerializeAsString());
  }
  return steps;
}

// The messaging_apply seeds; returns the replica of the longest one for the state dumps.
void messaging_applies(const Writer& w, seed::Replica& replica) {
  const std::string_view t = "messaging_apply";
  w.write(t, "users.bin", encode_steps(users_and_devices()));
  w.write(t, "group.bin", encode_steps(group_chat()));

  std::vector<Step> steps = direct_chat();
  std::int64_t now_ms = seed::kStartMs;
  herald::raft::Index index = 0;
  apply_steps(replica, steps, now_ms, index);
  const std::vector<Step> fires = runtime_steps(replica, now_ms, 2);
  apply_steps(replica, fires, now_ms, index);
  steps.insert(steps.end(), fires.begin(), fires.end());
  const std::vector<Step> reports = activity_reports(replica);
  apply_steps(replica, reports, now_ms, index);
  steps.insert(steps.end(), reports.begin(), reports.end());
  const std::vector<Step> escalations = runtime_steps(replica, now_ms, 120);
  apply_steps(replica, escalations, now_ms, index);
  steps.insert(steps.end(), escalations.begin(), escalations.end());
  w.write(t, "direct_delivery.bin", encode_steps(steps));

  // Near-valid: a send from a non-member, a malformed command, a signal to no workflow.
  std::vector<Step> bad = users_and_devices();
  bad.push_back(m(send(seed::kConversation, "carol", "x-1", "let me in")));
  bad.emplace_back(0, std::string("\x62\x05\x0a\x03\xff\xfe\xfd", 7));
  herald::workflowpb::WorkflowCommand signal;
  signal.mutable_signal()->set_workflow_id("delivery/none/1/bob");
  signal.mutable_signal()->set_name(herald::messaging::kDeliveredSignal);
  bad.emplace_back(seed::kWorkflowBit, signal.SerializeAsString());
  w.write(t, "refused.bin", encode_steps(bad));
}

// ---------------------------------------------------------------- state records, snapshots

// The state_records query header.
std::string query(std::string_view user, std::string_view conversation, std::string_view device,
                  std::string_view workflow_id, std::string_view workflow_type,
                  std::string_view page_token, std::string_view kv_key, std::uint64_t seq) {
  std::string out;
  for (const std::string_view s :
       {user, conversation, device, workflow_id, workflow_type, page_token, kv_key}) {
    put_short(out, s);
  }
  put_fixed64_be(out, seq);
  return out;
}

std::vector<std::pair<std::string, std::string>> state_of(const herald::storage::Reader& r) {
  std::vector<std::pair<std::string, std::string>> records;
  for (auto it = r.scan(herald::storage::Space::kState, "", ""); it->valid(); it->next()) {
    records.emplace_back(it->key(), it->value());
  }
  return records;
}

void state_records(const Writer& w, seed::Replica& replica) {
  const std::string_view t = "state_records";
  // A KV value and a session record beside the domain's records.
  herald::rsm::ApplyBatch batch(&replica.engine);
  herald::rsmpb::Command put;
  put.mutable_kv_put()->set_key("greeting");
  put.mutable_kv_put()->set_value("hello");
  HERALD_ASSERT(replica.router.apply(1000, put, batch).code() == 0, "kv put applies");
  herald::rsm::SessionTable sessions;
  HERALD_ASSERT(sessions.admit(batch, 1, 1, 3).ok(), "a session is admitted");
  HERALD_ASSERT(replica.engine.write(batch.writes(), false).ok(), "MemEngine writes");

  const auto page =
      herald::messaging::Domain::chat_index(replica.engine, "bob", kTokenPageSize, "");
  HERALD_ASSERT(page.ok(), "chat index reads");
  const std::string delivery =
      herald::messaging::delivery_workflow_id(seed::kConversation, 1, "bob");
  const auto records = state_of(replica.engine);
  std::string sealed_body;
  std::string raw_body;
  for (const auto& [key, value] : records) {
    std::string_view payload;
    if (key.size() <= 0xff && herald::open_record(value, payload)) {
      put_u8(sealed_body, 0);
      put_short(sealed_body, key);
      put_long(sealed_body, payload);
    }
    if (key.size() <= 0xff) {
      put_u8(raw_body, 0x80);
      put_short(raw_body, key);
      put_long(raw_body, value);
    }
  }
  w.write(t, "direct_chat_bob.bin",
          query("bob", seed::kConversation, "bob-phone", delivery, herald::messaging::kDeliveryType,
                page->next_page_token, "greeting", 1) +
              sealed_body);
  w.write(t, "direct_chat_alice_raw.bin",
          query("alice", seed::kConversation, "alice-phone", delivery,
                herald::messaging::kDeliveryType, "", "greeting", 2) +
              raw_body);
  w.write(t, "empty_state_bad_token.bin",
          query("bob", "team", "bob-phone", "w-1", "demo.pipeline", "zz", "k", 0));
}

void snapshot_chunks(const Writer& w, const seed::Replica& replica) {
  const std::string_view t = "snapshot_chunk";
  std::string payload;
  std::size_t n = 0;
  for (const auto& [key, value] : state_of(replica.engine)) {
    if (n++ == kChunkRecords) break;
    put_fixed32_be(payload, static_cast<std::uint32_t>(key.size()));
    payload += key;
    put_fixed32_be(payload, static_cast<std::uint32_t>(value.size()));
    payload += value;
  }
  w.write(t, "state_records.bin", std::string(1, '\x01') + payload);
  w.write(t, "sealed_as_received.bin", std::string(1, '\x00') + herald::seal_record(payload));
  w.write(t, "empty.bin", std::string(1, '\x01'));
  std::string truncated = payload.substr(0, payload.size() / 2);
  w.write(t, "truncated_record.bin", std::string(1, '\x01') + truncated);
}

// webpush: subscription tokens and aes128gcm bodies (fuzz/webpush_fuzz.cc), from RFC 8291
// Appendix A.
void webpush_inputs(const Writer& w) {
  namespace v = herald::fuzz::push_vectors;
  const std::string_view t = "webpush";
  w.write(t, "subscription.json", v::subscription("https://push.example.net/wpush/v2/abc"));
  w.write(t, "subscription_port.json", v::subscription("https://push.example.net:8443/p?x=1"));
  w.write(t, "subscription_http.json", v::subscription("http://push.example.net/wpush/v2/abc"));
  w.write(t, "subscription_user_info.json", v::subscription("https://u:p@push.example.net/a"));
  w.write(t, "subscription_no_auth.json",
          R"({"endpoint":"https://push.example.net/a","keys":{"p256dh":")" +
              std::string(v::kUaPublic) + R"("}})");
  const std::string body = v::unb64(v::kBody);
  w.write(t, "rfc8291_body.bin", body);
  w.write(t, "truncated_body.bin", body.substr(0, body.size() - 1));
  std::string small_record_size = body;
  small_record_size[16] = small_record_size[17] = small_record_size[18] = '\0';
  small_record_size[19] = '\x11';  // rs = 17, below the minimum of 18
  w.write(t, "record_size_17.bin", small_record_size);
}

// jwt: compact tokens (fuzz/jwt_fuzz.cc), from RFC 7515 Appendix A.
void jwt_tokens(const Writer& w) {
  namespace v = herald::fuzz::push_vectors;
  const std::string_view t = "jwt";
  const auto token = [&](std::string_view header, std::string_view signature) {
    return std::string(header) + "." + std::string(v::kJwtPayload) + "." + std::string(signature);
  };
  w.write(t, "rfc7515_a1_hs256.txt", token(v::kHs256Header, v::kHs256Signature));
  w.write(t, "rfc7515_a2_rs256.txt", token(v::kRs256Header, v::kRs256Signature));
  w.write(t, "rfc7515_a3_es256.txt", token(v::kEs256Header, v::kEs256Signature));
  // {"alg":"none"} with no signature.
  w.write(t, "alg_none.txt", token("eyJhbGciOiJub25lIn0", ""));
  // {"alg":"HS256"} presented where RS256 and ES256 are expected: algorithm confusion.
  w.write(t, "hs256_header_es256_signature.txt", token("eyJhbGciOiJIUzI1NiJ9", v::kEs256Signature));
  // {"alg":"ES256","crit":["exp"]}.
  w.write(t, "crit.txt", token("eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiZXhwIl19", v::kEs256Signature));
  w.write(t, "two_segments.txt", std::string(v::kEs256Header) + "." + std::string(v::kJwtPayload));
  w.write(t, "four_segments.txt", token(v::kEs256Header, v::kEs256Signature) + ".x");
}

// sign_in: a first byte (even: a JWKS document; odd: a token), then the input
// (fuzz/sign_in_fuzz.cc). Tokens: the RFC 7515 Appendix A ones, and HS256 tokens signed with the
// A.1 key carrying a user and a device, valid at the target's time.
void sign_in_inputs(const Writer& w) {
  namespace v = herald::fuzz::push_vectors;
  const std::string_view t = "sign_in";
  const std::string rsa = R"({"kty":"RSA","kid":"rsa","n":")" + std::string(v::kRsaModulus) +
                          R"(","e":")" + std::string(v::kRsaExponent) + R"("})";
  const std::string ec = R"({"kty":"EC","crv":"P-256","kid":"ec","x":")" + std::string(v::kEcX) +
                         R"(","y":")" + std::string(v::kEcY) + R"("})";
  w.write(t, "jwks_rsa_ec.bin", std::string(1, '\0') + R"({"keys":[)" + rsa + "," + ec + "]}");
  w.write(t, "jwks_empty.bin", std::string(1, '\0') + R"({"keys":[]})");
  w.write(t, "jwks_enc_use.bin",
          std::string(1, '\0') + R"({"keys":[{"kty":"EC","crv":"P-384","use":"enc"}]})");
  const auto token = [&](std::string_view header, std::string_view signature) {
    return std::string(1, '\1') + std::string(header) + "." + std::string(v::kJwtPayload) + "." +
           std::string(signature);
  };
  w.write(t, "rfc7515_a1_hs256.bin", token(v::kHs256Header, v::kHs256Signature));
  w.write(t, "rfc7515_a2_rs256.bin", token(v::kRs256Header, v::kRs256Signature));
  w.write(t, "rfc7515_a3_es256.bin", token(v::kEs256Header, v::kEs256Signature));
  herald::Result<herald::crypto::JwtSigner> signer =
      herald::crypto::JwtSigner::hmac(v::unb64(v::kHmacKey));
  HERALD_ASSERT(signer.ok(), "the RFC 7515 A.1 key signs");
  const auto signed_in = [&](const boost::json::object& claims, const char* name) {
    herald::Result<std::string> jwt = signer->sign(claims, {{"kid", "app-1"}});
    HERALD_ASSERT(jwt.ok(), "an HS256 seed token signs");
    w.write(t, name, std::string(1, '\1') + *jwt);
  };
  signed_in({{"sub", "alice"}, {"device_id", "alice-web"}, {"exp", v::kJwtExp + 600}},
            "hs256_signs_in.bin");
  signed_in({{"sub", "bob"},
             {"device_id", "bob-phone"},
             {"platform", "ios"},
             {"name", "Bob"},
             {"iat", v::kJwtExp - 60},
             {"nbf", v::kJwtExp - 60},
             {"exp", v::kJwtExp + 600}},
            "hs256_all_claims.bin");
  signed_in({{"sub", "carol"}, {"device_id", "carol:web"}, {"exp", v::kJwtExp + 600}},
            "hs256_bad_device.bin");
  signed_in({{"sub", "dave"}, {"device_id", "dave-web"}, {"exp", v::kJwtExp - 3600}},
            "hs256_expired.bin");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const Writer w{fs::path(argv[1])};
  gateway_frames(w);
  client_frames(w);
  http_requests(w);
  serve_configs(w);
  peer_frames(w);
  log_stores(w);
  segment_logs(w);
  seed::Replica replica;
  messaging_applies(w, replica);
  state_records(w, replica);
  snapshot_chunks(w, replica);
  webpush_inputs(w);
  jwt_tokens(w);
  sign_in_inputs(w);
  return 0;
}
