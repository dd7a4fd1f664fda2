// Base64 (RFC 4648) on top of OpenSSL's block codec: the standard alphabet, the URL-safe one
// (JWTs), or either (the phoenix client's auth subprotocol, whose "base64url" prefix carries
// standard base64 from btoa()).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kronop {

enum class Base64 : unsigned char {
  kStandard,  // A-Z a-z 0-9 + /
  kUrl,       // A-Z a-z 0-9 - _
  kEither,    // decoding only: both sets
};

// Decodes `text`, with or without '=' padding; nullopt when it is not base64 of `alphabet`.
std::optional<std::string> decode_base64(std::string_view text, Base64 alphabet);
// Encodes `bytes`: standard with padding, or URL-safe without (as JWTs are written).
std::string encode_base64(std::string_view bytes, Base64 alphabet);

}  // namespace kronop
