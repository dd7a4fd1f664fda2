// Authentication: JSON Web Tokens signed with HMAC-SHA256 (JWT "HS256", RFC 7519), the kind
// a Node backend mints with its usual library (jsonwebtoken, jose) from a shared secret.
//
// A token is accepted when its header says {"alg":"HS256"} (any other algorithm, "none"
// included, is refused), its signature verifies with the secret (compared in constant
// time), its payload is a JSON object with a non-empty string "sub" (the user id, which must
// be a valid topic id so that it names a user:<id> topic), and the time is before "exp" and
// not before "nbf" when those are present. "admin": true grants admin rights (the system
// topic). The claims are parsed with simdjson; base64 and HMAC are OpenSSL's.
//
// TokenVerifier keeps a JSON parser: one per thread (each I/O loop has its own).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kronop/result.h"

namespace kronop {

struct Identity {
  std::string user_id;  // empty: anonymous
  bool admin = false;
  bool authenticated() const { return !user_id.empty(); }
};

enum class TokenError : uint8_t {
  kNone = 0,
  kMalformed,    // not three base64url parts of JSON objects
  kAlgorithm,    // header's alg is not HS256
  kSignature,    // signature does not verify
  kExpired,      // now >= exp
  kNotYetValid,  // now < nbf
  kSubject,      // no usable "sub"
  kNoSecret,     // the daemon has no secret: tokens cannot be checked
  kCount
};
// A short stable name ("expired", ...) for counters and logs.
const char *token_error_name(TokenError e);
// A sentence for HTTP error bodies and logs.
const char *token_error_message(TokenError e);

class TokenVerifier {
 public:
  // An empty secret refuses every token (kNoSecret).
  explicit TokenVerifier(std::string secret);
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier &) = delete;
  TokenVerifier &operator=(const TokenVerifier &) = delete;

  // `now_s`: Unix time in seconds. On kNone, `out` holds the token's identity.
  TokenError verify(std::string_view token, int64_t now_s, Identity &out);

 private:
  struct Parser;
  std::string secret_;
  std::unique_ptr<Parser> parser_;
};

// Mints a token (kronopctl token, the tests): {"alg":"HS256","typ":"JWT"} and a payload with
// sub, iat, exp (when exp > 0) and, for admins, "admin":true. `user` must be a valid topic id.
std::string mint_token(std::string_view secret, std::string_view user, bool admin, int64_t iat,
                       int64_t exp);

// Reads a secret file: its contents without trailing whitespace; an error when it cannot be
// read or is empty. `warning` is set when others than the owner (and group) may read it.
Result<std::string> read_secret_file(const std::string &path, std::string *warning);

}  // namespace kronop
