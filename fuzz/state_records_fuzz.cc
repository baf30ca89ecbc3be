// Fuzz target: the readers of stored state-machine records (messaging/domain.h,
// workflow/engine.h, rsm/kv_state_machine.h, rsm/session.h; key layouts in docs/messaging.md,
// docs/workflow.md and docs/storage-format.md).
//
// The input is a header of query arguments, then records that fill Space::kState of a
// storage::MemEngine:
//   header: [u8 len][user id] [u8 len][conversation id] [u8 len][device id] [u8 len][workflow id]
//           [u8 len][workflow type] [u8 len][page token] [u8 len][kv key] [u64 BE seq/run id]
//   record: [u8 flags][u8 len][key][u16 BE len][value]; the value is sealed (CRC-32C framed, as
//           every record is stored) unless flags & kRawValueBit.
// Then runs every reader of applied state over it: the messaging domain's point reads, chat
// index (with the input's page token), change stream sync, read cursor and device marks; the
// workflow engine's record, history, visibility list (with the page token), activity, due timers
// and dispatchable activities; the KV read; the session admission of one command.
// Asserts: no crash, leak or undefined behaviour, no failed HERALD_ASSERT; a reader answers a value
// or kCorruption (damaged record or broken invariant), kInvalidArgument (a bad page token or id),
// or kNotFound.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "base/encoding.h"
#include "base/status.h"
#include "fuzz/fuzz_input.h"
#include "messaging/domain.h"
#include "rsm/apply_batch.h"
#include "rsm/kv_state_machine.h"
#include "rsm/session.h"
#include "storage/mem_engine.h"
#include "workflow/engine.h"

namespace {

namespace storage = herald::storage;
using herald::Code;
using herald::Status;
using herald::messaging::Domain;
using herald::workflow::Engine;

constexpr std::uint8_t kRawValueBit = 0x80;
// Page size of the scanning readers: small, so paging and its tokens are exercised.
constexpr std::size_t kPageSize = 4;
constexpr std::int64_t kNowMs = 1'000'000'000;

void check(const Status& status) {
  const Code code = status.code();
  HERALD_ASSERT(status.ok() || code == Code::kCorruption || code == Code::kInvalidArgument ||
                    code == Code::kNotFound,
                "a reader answers a value, kCorruption, kInvalidArgument or kNotFound");
}

struct Query {
  std::string user_id;
  std::string conversation_id;
  std::string device_id;
  std::string workflow_id;
  std::string workflow_type;
  std::string page_token;
  std::string kv_key;
  std::uint64_t seq = 0;
};

Query read_query(herald::fuzz::FuzzInput& in) {
  Query q;
  q.user_id = in.short_string();
  q.conversation_id = in.short_string();
  q.device_id = in.short_string();
  q.workflow_id = in.short_string();
  q.workflow_type = in.short_string();
  q.page_token = in.short_string();
  q.kv_key = in.short_string();
  q.seq = in.u64();
  return q;
}

void fill_state(herald::fuzz::FuzzInput& in, storage::MemEngine& engine) {
  storage::WriteBatch batch;
  while (!in.empty()) {
    const std::uint8_t flags = in.u8();
    const std::string_view key = in.short_string();
    const std::string_view value = in.long_string();
    batch.put(storage::Space::kState, key,
              (flags & kRawValueBit) != 0 ? std::string(value) : herald::seal_record(value));
  }
  HERALD_ASSERT(engine.write(batch, /*sync=*/true).ok(), "MemEngine writes");
}

void read_messaging(const storage::Reader& r, const Query& q) {
  check(Domain::get_user(r, q.user_id).status());
  check(Domain::get_device(r, q.device_id).status());
  check(Domain::get_conversation(r, q.conversation_id).status());
  check(Domain::get_message(r, q.conversation_id, q.seq).status());
  check(Domain::preferences(r, q.user_id, "").status());
  check(Domain::preferences(r, q.user_id, q.conversation_id).status());
  check(Domain::chat_index(r, q.user_id, kPageSize, "").status());
  check(Domain::chat_index(r, q.user_id, kPageSize, q.page_token).status());
  check(Domain::sync(r, q.user_id, 0, kPageSize).status());
  check(Domain::sync(r, q.user_id, q.seq, kPageSize).status());
  check(Domain::read_cursor(r, q.user_id, q.conversation_id).status());
  check(Domain::device_marks(r, q.user_id, q.conversation_id).status());
}

void read_workflows(const storage::Reader& r, const Query& q) {
  check(Engine::read_workflow(r, q.workflow_id).status());
  check(Engine::read_history(r, q.workflow_id, q.seq, 0, kPageSize).status());
  herald::workflow::ListFilter filter;
  filter.type = q.workflow_type;
  filter.limit = kPageSize;
  check(Engine::list(r, filter).status());
  filter.page_token = q.page_token;
  check(Engine::list(r, filter).status());
  filter.state = q.device_id;
  check(Engine::list(r, filter).status());
  check(Engine::read_activity(r, {.workflow_id = q.workflow_id, .run_id = q.seq, .activity_id = 1})
            .status());
  check(Engine::due_timers(r, kNowMs, kPageSize).status());
  check(Engine::due_timers_after(r, kNowMs, q.page_token, kPageSize).status());
  check(Engine::dispatchable_activities(r, kPageSize).status());
}

void read_rsm(const storage::MemEngine& engine, const Query& q) {
  check(herald::rsm::KvStateMachine::read(engine, q.kv_key).status());
  herald::rsm::ApplyBatch batch(&engine);
  herald::rsm::SessionTable sessions;
  check(sessions.admit(batch, /*origin=*/1, /*incarnation=*/1, q.seq).status());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  herald::fuzz::FuzzInput in(data, size);
  const Query query = read_query(in);
  storage::MemEngine engine;
  fill_state(in, engine);
  read_messaging(engine, query);
  read_workflows(engine, query);
  read_rsm(engine, query);
  return 0;
}
