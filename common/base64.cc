// Base64; see base64.h.
#include "base64.h"

#include <openssl/evp.h>

#include <climits>

namespace kronop {
namespace {

// The character in the standard alphabet that `c` stands for, or 0 when `c` is not in
// `alphabet`.
char standard_char(char c, Base64 alphabet) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return c;
  const bool standard = alphabet != Base64::kUrl, url = alphabet != Base64::kStandard;
  if (standard && (c == '+' || c == '/')) return c;
  if (url && c == '-') return '+';
  if (url && c == '_') return '/';
  return 0;
}

}  // namespace

// OpenSSL's EVP_DecodeBlock wants whole 4-character groups, pads nothing, and takes '='
// anywhere as a zero, so the shape is checked here and the padding re-added before it
// decodes.
std::optional<std::string> decode_base64(std::string_view text, Base64 alphabet) {
  if (alphabet == Base64::kUrl && text.find('=') != std::string_view::npos) return std::nullopt;
  if (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1 || text.size() > INT_MAX / 2) return std::nullopt;
  const std::size_t pad = (4 - text.size() % 4) % 4;
  std::string padded;
  padded.reserve(text.size() + pad);
  for (char c : text) {
    const char s = standard_char(c, alphabet);
    if (s == 0) return std::nullopt;
    padded.push_back(s);
  }
  padded.append(pad, '=');
  std::string out(padded.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                reinterpret_cast<const unsigned char *>(padded.data()),
                                static_cast<int>(padded.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  return out;
}

std::string encode_base64(std::string_view bytes, Base64 alphabet) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                reinterpret_cast<const unsigned char *>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  if (alphabet == Base64::kUrl) {
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char &c : out) {
      if (c == '+') c = '-';
      if (c == '/') c = '_';
    }
  }
  return out;
}

}  // namespace kronop
