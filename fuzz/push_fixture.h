// Known inputs shared by the push fuzz targets and their seeds (fuzz/make_corpus.cc): the
// RFC 8291 Appendix A subscription and message, and the RFC 7515 Appendix A tokens with their
// keys. Public test vectors, so every seed is a valid input the fuzzer mutates from.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "crypto/base64url.h"

namespace herald::fuzz::push_vectors {

// RFC 8291 Appendix A: the user agent's key pair and auth secret, the sender's key, and the body.
inline constexpr std::string_view kUaPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
inline constexpr std::string_view kUaPublic =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
inline constexpr std::string_view kAuth = "BTBZMqHH6r4Tts7J_aSIgg";
inline constexpr std::string_view kAsPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
inline constexpr std::string_view kSalt = "DGv6ra1nlYgDCS1FRnbzlw";
inline constexpr std::string_view kBody =
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWA"
    "mS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxs"
    "j_Qulcy4a-fN";

// RFC 7515 Appendix A: the claims every example signs, and its exp.
inline constexpr std::string_view kJwtPayload =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q";
inline constexpr std::int64_t kJwtExp = 1300819380;
// A.1: HS256.
inline constexpr std::string_view kHmacKey =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
inline constexpr std::string_view kHs256Header = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
inline constexpr std::string_view kHs256Signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
// A.2: RS256.
inline constexpr std::string_view kRsaModulus =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4"
    "d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5re"
    "xMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxX"
    "FvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
inline constexpr std::string_view kRsaExponent = "AQAB";
inline constexpr std::string_view kRs256Header = "eyJhbGciOiJSUzI1NiJ9";
inline constexpr std::string_view kRs256Signature =
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5"
    "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb"
    "1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOY"
    "EUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
// A.3: ES256.
inline constexpr std::string_view kEcX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
inline constexpr std::string_view kEcY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
inline constexpr std::string_view kEs256Header = "eyJhbGciOiJFUzI1NiJ9";
inline constexpr std::string_view kEs256Signature =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

// The decoded bytes of a vector above. Aborts on a malformed one (a bug in this file).
inline std::string unb64(std::string_view text) {
  Result<std::string> bytes = crypto::base64url_decode(text);
  HERALD_ASSERT(bytes.ok(), "a test vector is base64url");
  return std::move(bytes).value();
}

// A subscription token of the RFC 8291 user agent with `endpoint`.
inline std::string subscription(std::string_view endpoint) {
  return std::string(R"({"endpoint":")") + std::string(endpoint) + R"(","expirationTime":null,)" +
         R"("keys":{"p256dh":")" + std::string(kUaPublic) + R"(","auth":")" + std::string(kAuth) +
         R"("}})";
}

}  // namespace herald::fuzz::push_vectors
