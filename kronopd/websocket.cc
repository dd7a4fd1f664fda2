// The WebSocket codec; see websocket.h.
#include "websocket.h"

#include "base64.h"

#include "http.h"

#include <openssl/evp.h>
#include <simdjson.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace kronop::daemon::ws {
namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 §1.3
constexpr std::string_view kPhoenixProtocol = "phoenix";
constexpr std::string_view kTokenPrefix = "base64url.bearer.phx.";

// ---- Handshake helpers -------------------------------------------------------------------

using http::for_each_list_element;
using http::iequals;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a token list (Connection, Upgrade) holds `token`; tokens are case-insensitive.
bool list_has_token(std::string_view list, std::string_view token) {
  bool found = false;
  for_each_list_element(list, [&](std::string_view element) {
    found = iequals(element, token);
    return !found;
  });
  return found;
}

// RFC 6455 §4.1: the key is a base64-encoded 16-byte nonce, so 22 characters and "==".
bool valid_key(std::string_view key) {
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  const auto nonce = decode_base64(key, Base64::kStandard);
  return nonce && nonce->size() == 16;
}

bool origin_allowed(std::string_view origin, const HandshakeOptions &options) {
  if (options.allowed_origins.empty() || origin.empty()) return true;
  for (const std::string &allowed : options.allowed_origins) {
    if (iequals(origin, allowed)) return true;
  }
  return false;
}

HandshakeResult refuse(int status, std::string_view reason) {
  HandshakeResult result;
  result.status = status;
  result.reason = reason;
  result.response = http_error_response(status, reason);
  return result;
}

// ---- Frame helpers -----------------------------------------------------------------------

bool is_control(uint8_t opcode) { return (opcode & 0x8) != 0; }

bool known_opcode(uint8_t opcode) { return opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xA); }

uint64_t read_be(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// XORs the payload with the 4-byte key, 8 bytes at a time. The key is laid out twice in
// memory order, so the word XOR is right on either byte order.
void unmask(char *p, std::size_t n, const unsigned char *key) {
  unsigned char key8[8];
  std::memcpy(key8, key, 4);
  std::memcpy(key8 + 4, key, 4);
  uint64_t k;
  std::memcpy(&k, key8, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    w ^= k;
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ static_cast<char>(key[i & 3]));
}

// The length of the longest prefix of `s` that does not end inside a UTF-8 sequence: a
// fragment may split a character, and only the part before the split can be judged yet.
std::size_t complete_utf8_prefix(std::string_view s) {
  const std::size_t n = s.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: the lead is further back
    const std::size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

bool valid_utf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

}  // namespace

// ---- Handshake ---------------------------------------------------------------------------

std::string accept_key(std::string_view client_key) {
  std::string input;
  input.reserve(client_key.size() + kGuid.size());
  input.append(client_key).append(kGuid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_size, EVP_sha1(), nullptr) != 1) {
    return {};
  }
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(digest_size));
  return std::string(reinterpret_cast<const char *>(encoded), static_cast<std::size_t>(n));
}

HandshakeResult accept_handshake(const HandshakeRequest &request, const HandshakeOptions &options) {
  // The order matters only for which reason a request broken several ways gets.
  if (request.method != "GET") return refuse(400, "WebSocket upgrade needs GET");
  if (request.http_major < 1 || (request.http_major == 1 && request.http_minor < 1)) {
    return refuse(400, "WebSocket upgrade needs HTTP/1.1");
  }
  if (!list_has_token(request.upgrade, "websocket")) {
    return refuse(400, "Upgrade header does not name websocket");
  }
  if (!list_has_token(request.connection, "upgrade")) {
    return refuse(400, "Connection header does not name upgrade");
  }
  if (trim(request.version) != "13") return refuse(426, "unsupported Sec-WebSocket-Version");
  const std::string_view key = trim(request.key);
  if (!valid_key(key)) return refuse(400, "missing or malformed Sec-WebSocket-Key");
  if (!origin_allowed(trim(request.origin), options)) return refuse(403, "origin not allowed");

  HandshakeResult result;
  bool bad_token = false;
  for_each_list_element(request.protocol, [&](std::string_view element) {
    if (element == kPhoenixProtocol) {
      result.phoenix = true;
    } else if (element.substr(0, kTokenPrefix.size()) == kTokenPrefix) {
      // The phoenix client btoa()s the token: the standard alphabet, '=' stripped.
      if (result.auth_token) {
        bad_token = true;  // which one would be meant?
      } else {
        result.auth_token = decode_base64(element.substr(kTokenPrefix.size()), Base64::kEither);
        bad_token = !result.auth_token;
      }
    }
    return !bad_token;
  });
  if (bad_token) return refuse(400, "malformed auth token in Sec-WebSocket-Protocol");

  const std::string accept = accept_key(key);
  if (accept.empty()) return refuse(500, "cannot compute Sec-WebSocket-Accept");
  result.status = 101;
  result.response =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  result.response += accept;
  result.response += "\r\n";
  if (result.phoenix) result.response += "Sec-WebSocket-Protocol: phoenix\r\n";
  result.response += "\r\n";
  return result;
}

std::string http_error_response(int status, std::string_view reason) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + http::status_text(status) + "\r\n";
  if (status == 426) {
    // RFC 6455 §4.4: say which version this server speaks; RFC 9110 §15.5.22: and which
    // protocol to upgrade to, which makes "upgrade" a connection option.
    out += "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n";
  } else {
    out += "Connection: close\r\n";
  }
  out += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ";
  out += std::to_string(reason.size() + 1);
  out += "\r\n\r\n";
  out += reason;
  out += '\n';
  return out;
}

// ---- Reading -----------------------------------------------------------------------------

bool valid_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

std::size_t FrameReader::fail(std::span<char> in, std::unique_ptr<std::string> &assembly,
                              FrameSink &sink, uint16_t code, std::string_view reason) {
  finished_ = true;
  in_flight_ = Opcode::kContinuation;
  assembly.reset();
  sink.on_protocol_error(code, reason);
  return in.size();
}

// Appends a data frame's payload to the message in flight (starting one if needed) and
// checks what can be checked of its UTF-8. False: the text is already invalid.
bool FrameReader::on_fragment(std::string_view payload, bool fin,
                              std::unique_ptr<std::string> &assembly) {
  if (!assembly) assembly = std::make_unique<std::string>();
  assembly->append(payload);
  if (in_flight_ != Opcode::kText) return true;
  const std::string_view text(*assembly);
  const std::size_t end = fin ? text.size() : complete_utf8_prefix(text);
  if (end <= utf8_checked_) return true;
  if (!valid_utf8(text.substr(utf8_checked_, end - utf8_checked_))) return false;
  utf8_checked_ = static_cast<uint32_t>(end);  // end <= max_message_, a uint32_t
  return true;
}

std::size_t FrameReader::consume(std::span<char> in, std::unique_ptr<std::string> &assembly,
                                 FrameSink &sink) {
  std::size_t pos = 0;
  while (!finished_) {
    const std::size_t avail = in.size() - pos;
    if (avail < 2) break;
    char *const frame = in.data() + pos;
    const auto *p = reinterpret_cast<const unsigned char *>(frame);
    const bool fin = (p[0] & 0x80) != 0;
    const uint8_t opcode = p[0] & 0x0F;
    const bool masked = (p[1] & 0x80) != 0;
    const uint8_t len7 = p[1] & 0x7F;

    // Everything the first two bytes can tell is judged now, before the rest arrives.
    // RSV bits belong to extensions, and none is negotiated: no permessage-deflate, since
    // a broadcast frame is built once for every subscriber.
    if ((p[0] & 0x70) != 0) {
      return fail(in, assembly, sink, kCloseProtocolError, "reserved bits set");
    }
    if (!known_opcode(opcode)) {
      return fail(in, assembly, sink, kCloseProtocolError, "unknown opcode");
    }
    if (!masked) return fail(in, assembly, sink, kCloseProtocolError, "client frame not masked");
    if (is_control(opcode)) {
      if (!fin) return fail(in, assembly, sink, kCloseProtocolError, "fragmented control frame");
      // Judged on the 7-bit field, as ws and uWebSockets do: a control frame's length
      // always fits there, and this keeps a control frame within 2 + 4 + 125 bytes.
      if (len7 > kMaxControlPayload) {
        return fail(in, assembly, sink, kCloseProtocolError, "control frame over 125 bytes");
      }
    } else if (opcode == 0 && !message_in_flight()) {
      return fail(in, assembly, sink, kCloseProtocolError, "continuation without a message");
    } else if (opcode != 0 && message_in_flight()) {
      return fail(in, assembly, sink, kCloseProtocolError, "new message inside a fragmented one");
    }

    // Longer encodings than needed are allowed: RFC 6455 asks minimal lengths of senders
    // but gives receivers no rule to reject others.
    const int length_bytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (avail < 2u + length_bytes) break;
    const uint64_t length = length_bytes == 0 ? len7 : read_be(p + 2, length_bytes);
    if (length >> 63) {
      return fail(in, assembly, sink, kCloseProtocolError, "64-bit length with the high bit set");
    }
    if (!is_control(opcode)) {
      const uint64_t so_far = message_in_flight() && assembly ? assembly->size() : 0;
      if (length > max_message_ - so_far) {  // so_far <= max_message_: checked frame by frame
        return fail(in, assembly, sink, kCloseMessageTooBig, "message too big");
      }
    }
    const std::size_t header = 2 + static_cast<std::size_t>(length_bytes) + 4;
    if (avail < header || avail - header < length) break;

    const auto size = static_cast<std::size_t>(length);
    char *const payload = frame + header;
    unmask(payload, size, p + header - 4);
    const std::string_view data(payload, size);
    pos += header + size;

    sink.on_frame(static_cast<Opcode>(opcode));
    if (finished_) break;  // the sink refused the frame
    switch (static_cast<Opcode>(opcode)) {
      case Opcode::kPing:
        sink.on_ping(data);
        break;
      case Opcode::kPong:
        sink.on_pong(data);
        break;
      case Opcode::kClose: {
        if (size == 1) {
          return fail(in, assembly, sink, kCloseProtocolError, "close payload of 1 byte");
        }
        uint16_t code = kCloseNoStatus;
        std::string_view reason;
        if (size >= 2) {
          code =
              static_cast<uint16_t>(read_be(reinterpret_cast<const unsigned char *>(payload), 2));
          reason = data.substr(2);
          if (!valid_close_code(code)) {
            return fail(in, assembly, sink, kCloseProtocolError, "invalid close code");
          }
          if (!valid_utf8(reason)) {
            return fail(in, assembly, sink, kCloseInvalidPayload, "close reason not UTF-8");
          }
        }
        // A message in flight is abandoned: the peer will send nothing more.
        finished_ = true;
        in_flight_ = Opcode::kContinuation;
        assembly.reset();
        sink.on_close(code, reason);
        return in.size();
      }
      case Opcode::kText:
      case Opcode::kBinary:
        if (fin) {
          if (opcode == 0x1 && !valid_utf8(data)) {
            return fail(in, assembly, sink, kCloseInvalidPayload, "text message not UTF-8");
          }
          if (opcode == 0x1) {
            sink.on_text(data);
          } else {
            sink.on_binary(data);
          }
          break;
        }
        in_flight_ = static_cast<Opcode>(opcode);
        utf8_checked_ = 0;
        if (assembly) assembly->clear();
        [[fallthrough]];
      case Opcode::kContinuation: {
        if (!on_fragment(data, fin, assembly)) {
          return fail(in, assembly, sink, kCloseInvalidPayload, "text message not UTF-8");
        }
        if (!fin) break;
        const Opcode kind = in_flight_;
        in_flight_ = Opcode::kContinuation;
        // The message is delivered from the assembly string, which is freed afterwards:
        // an idle connection holds no message buffer.
        const std::unique_ptr<std::string> message = std::move(assembly);
        if (kind == Opcode::kText) {
          sink.on_text(*message);
        } else {
          sink.on_binary(*message);
        }
        break;
      }
    }
  }
  if (!finished_) return pos;
  // Finished, perhaps by stop() from a callback: nothing more will be read, so a message in
  // flight will never complete.
  in_flight_ = Opcode::kContinuation;
  assembly.reset();
  return in.size();
}

// ---- Writing -----------------------------------------------------------------------------

FrameHeader frame_header(Opcode opcode, uint64_t payload_size) {
  FrameHeader h;
  h.bytes[0] = static_cast<char>(0x80 | static_cast<uint8_t>(opcode));
  int length_bytes = 0;
  if (payload_size < 126) {
    h.bytes[1] = static_cast<char>(payload_size);
  } else if (payload_size <= 0xFFFF) {
    h.bytes[1] = 126;
    length_bytes = 2;
  } else {
    h.bytes[1] = 127;
    length_bytes = 8;
  }
  for (int i = 0; i < length_bytes; ++i) {
    h.bytes[2 + i] = static_cast<char>(payload_size >> (8 * (length_bytes - 1 - i)));
  }
  h.size = static_cast<uint8_t>(2 + length_bytes);
  return h;
}

std::string encode_frame(Opcode opcode, std::string_view payload) {
  const FrameHeader h = frame_header(opcode, payload.size());
  std::string out;
  out.reserve(h.size + payload.size());
  out.append(h.view()).append(payload);
  return out;
}

std::string close_frame(uint16_t code, std::string_view reason) {
  if (code == kCloseNoStatus) return encode_frame(Opcode::kClose, {});
  std::size_t keep = std::min(reason.size(), kMaxControlPayload - 2);
  if (keep < reason.size()) {
    // Back up to the start of the character the cut would split (if any).
    while (keep > 0 && (static_cast<unsigned char>(reason[keep]) & 0xC0) == 0x80) --keep;
  }
  std::string payload;
  payload.reserve(2 + keep);
  payload += static_cast<char>(code >> 8);
  payload += static_cast<char>(code & 0xFF);
  payload.append(reason.substr(0, keep));
  return encode_frame(Opcode::kClose, payload);
}

}  // namespace kronop::daemon::ws
