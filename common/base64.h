// Base64 (RFC 4648) on top of OpenSSL's block codec: the standard alphabet, the URL-safe one
// (JWTs), or either (the phoenix client's auth subprotocol, whose "base64url" prefix carries
// standard base64 from btoa()).
//
// The URL-safe form is JWS's base64url (RFC 7515 §2): never padded. Decoding it refuses '='
// so that a token has one spelling; a padded one is not a JWS compact serialization, and a
// verifier that took it would accept tokens other verifiers refuse.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kronop {

enum class Base64 : unsigned char {
  kStandard,  // A-Z a-z 0-9 + /
  kUrl,       // A-Z a-z 0-9 - _, without padding
  kEither,    // decoding only: both sets
};

// Decodes `text`; nullopt when it is not base64 of `alphabet`. kStandard and kEither take
// it with or without '=' padding, kUrl only without.
std::optional<std::string> decode_base64(std::string_view text, Base64 alphabet);
// Encodes `bytes`: standard with padding, or URL-safe without (as JWTs are written).
std::string encode_base64(std::string_view bytes, Base64 alphabet);

}  // namespace kronop
