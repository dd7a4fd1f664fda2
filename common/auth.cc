// JWT HS256; see auth.h.
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <simdjson.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base64.h"
#include "envelope_validation.h"

namespace kronop {

struct TokenVerifier::Parser {
  simdjson::dom::parser json;
};

namespace {

constexpr std::size_t kMaxToken = 8192;

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char *>(data.data()), data.size(), mac.data(),
           &len) == nullptr) {
    return {};
  }
  return std::string(reinterpret_cast<const char *>(mac.data()), len);
}

// A JSON number claim (exp, nbf) as whole seconds; false when it is not a number.
bool number_claim(const simdjson::dom::element &e, int64_t *out) {
  int64_t i = 0;
  if (e.get_int64().get(i) == simdjson::SUCCESS) {
    *out = i;
    return true;
  }
  double d = 0;
  if (e.get_double().get(d) == simdjson::SUCCESS && std::isfinite(d) && d > -9e18 && d < 9e18) {
    *out = static_cast<int64_t>(std::floor(d));
    return true;
  }
  return false;
}

}  // namespace

const char *token_error_name(TokenError e) {
  switch (e) {
    case TokenError::kNone:
      return "none";
    case TokenError::kMalformed:
      return "malformed";
    case TokenError::kAlgorithm:
      return "algorithm";
    case TokenError::kSignature:
      return "signature";
    case TokenError::kExpired:
      return "expired";
    case TokenError::kNotYetValid:
      return "not_yet_valid";
    case TokenError::kSubject:
      return "subject";
    case TokenError::kNoSecret:
      return "no_secret";
    case TokenError::kCount:
      break;
  }
  return "unknown";
}

const char *token_error_message(TokenError e) {
  switch (e) {
    case TokenError::kNone:
      return "valid token";
    case TokenError::kMalformed:
      return "invalid token: not a JSON Web Token";
    case TokenError::kAlgorithm:
      return "invalid token: only HS256 is accepted";
    case TokenError::kSignature:
      return "invalid token: bad signature";
    case TokenError::kExpired:
      return "invalid token: expired";
    case TokenError::kNotYetValid:
      return "invalid token: not valid yet (nbf)";
    case TokenError::kSubject:
      return "invalid token: no user id (sub)";
    case TokenError::kNoSecret:
      return "tokens are not accepted: the server has no auth secret";
    case TokenError::kCount:
      break;
  }
  return "invalid token";
}

TokenVerifier::TokenVerifier(std::string secret)
    : secret_(std::move(secret)), parser_(std::make_unique<Parser>()) {}

TokenVerifier::~TokenVerifier() = default;

TokenError TokenVerifier::verify(std::string_view token, int64_t now_s, Identity &out) {
  out = Identity{};
  if (secret_.empty()) return TokenError::kNoSecret;
  if (token.size() > kMaxToken) return TokenError::kMalformed;
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return TokenError::kMalformed;
  const std::string_view header64 = token.substr(0, dot1);
  const std::string_view payload64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature64 = token.substr(dot2 + 1);
  auto header = decode_base64(header64, Base64::kUrl);
  auto payload = decode_base64(payload64, Base64::kUrl);
  auto signature = decode_base64(signature64, Base64::kUrl);
  if (!header || !payload || !signature) return TokenError::kMalformed;

  // The algorithm first: a token must not choose how it is checked.
  simdjson::dom::element h;
  if (parser_->json.parse(*header).get(h) != simdjson::SUCCESS || !h.is_object())
    return TokenError::kMalformed;
  std::string_view alg;
  if (h["alg"].get_string().get(alg) != simdjson::SUCCESS) return TokenError::kMalformed;
  if (alg != "HS256") return TokenError::kAlgorithm;

  const std::string expected = hmac_sha256(secret_, token.substr(0, dot2));
  if (expected.empty() || signature->size() != expected.size() ||
      CRYPTO_memcmp(signature->data(), expected.data(), expected.size()) != 0) {
    return TokenError::kSignature;
  }

  simdjson::dom::element p;
  if (parser_->json.parse(*payload).get(p) != simdjson::SUCCESS || !p.is_object())
    return TokenError::kMalformed;
  simdjson::dom::element claim;
  if (p["exp"].get(claim) == simdjson::SUCCESS) {
    int64_t exp = 0;
    if (!number_claim(claim, &exp)) return TokenError::kMalformed;
    if (now_s >= exp) return TokenError::kExpired;
  }
  if (p["nbf"].get(claim) == simdjson::SUCCESS) {
    int64_t nbf = 0;
    if (!number_claim(claim, &nbf)) return TokenError::kMalformed;
    if (now_s < nbf) return TokenError::kNotYetValid;
  }
  std::string_view sub;
  if (p["sub"].get_string().get(sub) != simdjson::SUCCESS ||
      !valid_topic("user:" + std::string(sub)))
    return TokenError::kSubject;
  bool admin = false;
  if (p["admin"].get_bool().get(admin) != simdjson::SUCCESS) admin = false;
  out.user_id.assign(sub);
  out.admin = admin;
  return TokenError::kNone;
}

std::string mint_token(std::string_view secret, std::string_view user, bool admin, int64_t iat,
                       int64_t exp) {
  const std::string header = encode_base64(R"({"alg":"HS256","typ":"JWT"})", Base64::kUrl);
  // `user` is a valid topic id (letters, digits, '_', '-', '.'): no JSON escaping needed.
  std::string payload = "{\"sub\":\"" + std::string(user) + "\",\"iat\":" + std::to_string(iat);
  if (exp > 0) payload += ",\"exp\":" + std::to_string(exp);
  if (admin) payload += ",\"admin\":true";
  payload += "}";
  std::string signing = header + "." + encode_base64(payload, Base64::kUrl);
  return signing + "." + encode_base64(hmac_sha256(secret, signing), Base64::kUrl);
}

Result<std::string> read_secret_file(const std::string &path, std::string *warning) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{-errno, "cannot read " + path + ": " + std::strerror(errno)};
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' ||
                             secret.back() == ' ' || secret.back() == '\t'))
    secret.pop_back();
  if (secret.empty()) return Error{-EINVAL, path + " is empty: the auth secret must not be"};
  struct stat st {};
  if (warning != nullptr && ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    *warning = path + " is readable by every user: anyone on this host can mint tokens (chmod o-r)";
  }
  return secret;
}

}  // namespace kronop
