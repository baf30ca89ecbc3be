// base64url (RFC 4648 section 5) without padding, the encoding of every JOSE and Web Push field.
//
// Contract: encoding never fails. Decoding is strict, so that one byte string has exactly one
// accepted text: only the URL-safe alphabet (A-Z a-z 0-9 - _), no '=' padding, no whitespace, a
// length that is not 1 modulo 4, and zero bits in the unused tail of the last character.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace herald::crypto {

[[nodiscard]] std::string base64url_encode(std::string_view bytes);

// Returns the decoded bytes, or kInvalidArgument naming the first offending character or the bad
// length. The empty text decodes to the empty string.
[[nodiscard]] Result<std::string> base64url_decode(std::string_view text);

}  // namespace herald::crypto
