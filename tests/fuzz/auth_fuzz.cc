// Fuzz target for the token verifier (connect-time and REST bearer tokens are untrusted
// input) and the base64 codec under it.
//
// Besides "no crash, no sanitizer report":
//  - a token accepted under the fuzzing secret names a user that makes a valid user: topic
//    and is unpadded base64url (no '=': JWS compact serialization);
//  - a token is never accepted under a different secret, nor when the server has none;
//  - base64 round-trips: decoding what was encoded gives the bytes back, in both alphabets.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "auth.h"
#include "base64.h"
#include "envelope_validation.h"
#include "fuzz_check.h"

using namespace kronop;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static TokenVerifier verifier("fuzz-secret");
  static TokenVerifier other("another-secret");
  static TokenVerifier none("");
  const std::string_view input(reinterpret_cast<const char *>(data), size);
  constexpr int64_t kNow = 1'764'190'000;

  Identity id;
  const TokenError e = verifier.verify(input, kNow, id);
  FUZZ_CHECK(e < TokenError::kCount);
  if (e == TokenError::kNone) {
    FUZZ_CHECK(valid_topic("user:" + id.user_id));
    FUZZ_CHECK(input.find('=') == std::string_view::npos);
    Identity id2;
    FUZZ_CHECK(other.verify(input, kNow, id2) != TokenError::kNone);
    FUZZ_CHECK(id2.user_id.empty());
  } else {
    FUZZ_CHECK(id.user_id.empty() && !id.admin);
  }
  FUZZ_CHECK(none.verify(input, kNow, id) == TokenError::kNoSecret);

  for (Base64 a : {Base64::kStandard, Base64::kUrl}) {
    const std::string encoded = encode_base64(input, a);
    auto decoded = decode_base64(encoded, a);
    FUZZ_CHECK(decoded && *decoded == input);
    auto either = decode_base64(encoded, Base64::kEither);
    FUZZ_CHECK(either && *either == input);
  }
  // Arbitrary text as base64: whatever decodes re-encodes to the same data.
  if (auto d = decode_base64(input, Base64::kEither)) {
    auto again = decode_base64(encode_base64(*d, Base64::kUrl), Base64::kUrl);
    FUZZ_CHECK(again && *again == *d);
  }
  return 0;
}
