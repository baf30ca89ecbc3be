// Fuzz target: the snapshot chunks a follower receives from its leader (rsm/node.h,
// decode_snapshot_chunk; docs/storage-format.md).
//
// The first input byte chooses how the rest is presented: odd, the rest is a chunk's payload and
// the target seals it (CRC-32C framed, as the leader does), so the fuzzer reaches the record
// parser behind the checksum; even, the rest is the chunk's data as received, checksum included.
// Asserts: no crash, leak or undefined behaviour; an error is kCorruption; the records decoded
// account for every payload byte (8 bytes of lengths, then the key and the value, each) and their
// views lie inside the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "base/status.h"
#include "fuzz/fuzz_input.h"
#include "rsm/node.h"

namespace {

constexpr std::uint8_t kSealBit = 0x01;
// Two u32 lengths in front of each record.
constexpr std::size_t kRecordHeaderBytes = 8;
// The sealed record's CRC-32C in front of the payload.
constexpr std::size_t kSealBytes = 4;

bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  herald::fuzz::FuzzInput in(data, size);
  const bool seal = (in.u8() & kSealBit) != 0;
  const std::string_view rest = in.rest();
  const std::string chunk = seal ? herald::seal_record(rest) : std::string(rest);
  const auto records = herald::rsm::decode_snapshot_chunk(chunk);
  if (!records.ok()) {
    HERALD_ASSERT(records.status().code() == herald::Code::kCorruption,
                  "a damaged snapshot chunk is kCorruption");
    return 0;
  }
  std::size_t bytes = kSealBytes;
  for (const herald::rsm::SnapshotRecord& record : *records) {
    HERALD_ASSERT(inside(record.key, chunk) && inside(record.value, chunk),
                  "records point into the chunk");
    bytes += kRecordHeaderBytes + record.key.size() + record.value.size();
  }
  HERALD_ASSERT(bytes == chunk.size(), "the records account for every byte of the chunk");
  return 0;
}
