// Basic Raft vocabulary shared by raft/, storage/, rsm/ and sim/.
#pragma once

#include <cstdint>

#include "raft/raftpb.pb.h"

namespace herald::raft {

using NodeId = std::uint64_t;
using Index = std::uint64_t;
using Term = std::uint64_t;

// Node ids are positive; 0 means "none" (no vote, no leader).
inline constexpr NodeId kNoNode = 0;

}  // namespace herald::raft
