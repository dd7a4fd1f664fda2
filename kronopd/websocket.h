// The RFC 6455 WebSocket codec for kronopd's clients: the opening handshake, the frames
// clients send, the frames the server sends. Pure: no I/O, no libuv, no clock. The server
// feeds it bytes and writes the bytes it returns (fuzzed by tests/fuzz/websocket_fuzz.cc).
//
// Handshake. accept_handshake() takes the pieces of the upgrade request the HTTP parser
// already split out and answers with the bytes to write: the 101 response, or an HTTP error
// (400 malformed, 403 Origin not allowed, 426 wrong version) after which the server closes.
// The digest and base64 are OpenSSL's. When the client offers the "phoenix" subprotocol
// (phoenix npm 1.8+ does whenever it has an authToken) the 101 selects it, since the client
// aborts without one; the token it carries ("base64url.bearer.phx.<token>") is decoded and
// returned for the server to check. Refusing a bad token (403) is the server's call, not
// the codec's.
//
// Reading. Memory is the constraint: the server holds up to a million connections and keeps
// no read buffer for an idle one. It reads into one buffer per loop and hands FrameReader::
// consume() the connection's leftover bytes followed by the new ones. consume() handles every
// complete frame in them and returns how many bytes it used; the caller keeps only the rest,
// which is part of one frame. A frame's header is judged as soon as it arrives (size limit,
// control frame length, masking, opcode), so the bytes a caller keeps are fewer than a
// 14-byte header plus the larger of the message size limit and 125, and a bad peer is
// refused before it sends its payload. A FrameReader is 12 bytes. A fragmented message is
// reassembled in a std::string that the caller owns through a unique_ptr: consume() creates
// it with the first fragment and frees it when the message is delivered (or the reader
// finishes), so a connection pays for it only while a fragmented message is in flight.
//
// Invariants of consume():
//  - it reads and writes only inside `in`; bytes it does not consume are left as they were
//    (payloads are unmasked in place only once their frame is complete), so the caller can
//    pass them again with more bytes appended;
//  - the events for a byte stream do not depend on how the stream is split across calls;
//  - a text or binary message delivered is at most max_message bytes, a text message and a
//    close reason are valid UTF-8, a ping/pong/close payload is at most 125 bytes;
//  - after on_close() or on_protocol_error() (or stop()) the reader is finished: no more
//    events, every later byte is consumed and dropped, the assembly string is freed;
//  - the views handed to the sink point into `in` or into the assembly string and are valid
//    only during the callback.
//
// Writing. Server frames are not masked. frame_header() gives the 2, 4 or 10 header bytes for
// a payload, so a broadcast is framed once and the same bytes go to every subscriber; the
// helpers build whole small frames (close, pong, text).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kronop::daemon::ws {

// ---- Handshake ---------------------------------------------------------------------------

// The upgrade request as the HTTP parser delivered it. An absent header is empty; a header
// sent more than once is its values joined with ", " (RFC 9110 §5.3), as for any list.
struct HandshakeRequest {
  std::string_view method;  // "GET"
  int http_major = 1;
  int http_minor = 1;
  std::string_view upgrade;     // Upgrade
  std::string_view connection;  // Connection
  std::string_view version;     // Sec-WebSocket-Version
  std::string_view key;         // Sec-WebSocket-Key
  std::string_view origin;      // Origin
  std::string_view protocol;    // Sec-WebSocket-Protocol
};

struct HandshakeOptions {
  // Origins allowed to connect, compared case-insensitively ("https://app.example.com").
  // Empty: any. A request without Origin is allowed either way, as Phoenix does: only
  // browsers send it, and the check exists to stop other sites' pages, not other programs.
  std::vector<std::string> allowed_origins;
};

struct HandshakeResult {
  int status = 0;           // 101 when accepted; else 400, 403, 426 (or 500: digest failed)
  std::string_view reason;  // why it was refused (static text); empty when accepted
  std::string response;     // the bytes to write: the 101 response, or the error response
  bool phoenix = false;     // the client offered "phoenix", and the 101 selects it
  std::optional<std::string> auth_token;  // from "base64url.bearer.phx.<token>", decoded

  bool accepted() const { return status == 101; }
};

HandshakeResult accept_handshake(const HandshakeRequest &request, const HandshakeOptions &options);

// Sec-WebSocket-Accept for a client's key: base64(SHA-1(key + RFC 6455 GUID)). Empty if
// OpenSSL fails.
std::string accept_key(std::string_view client_key);

// A complete HTTP/1.1 error response that closes the connection, with `reason` and a newline
// as its text/plain body. 426 also names the version the server speaks.
std::string http_error_response(int status, std::string_view reason);

// ---- Frames ------------------------------------------------------------------------------

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes kronopd sends or receives (RFC 6455 §7.4, IANA registry).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseUnsupportedData = 1003;
inline constexpr uint16_t kCloseNoStatus = 1005;  // never on the wire: "the close had no code"
inline constexpr uint16_t kCloseInvalidPayload = 1007;
inline constexpr uint16_t kClosePolicyViolation = 1008;
inline constexpr uint16_t kCloseMessageTooBig = 1009;
inline constexpr uint16_t kCloseInternalError = 1011;
inline constexpr uint16_t kCloseServiceRestart = 1012;
inline constexpr uint16_t kCloseTryAgainLater = 1013;

// Whether a code may appear in a close frame: 1000-1003, 1007-1014, 3000-4999. 1004 is
// reserved, 1005/1006/1015 are for reports only. 1012-1014 are registered (kronopd itself
// closes with 1012 on drain and 1013 for a slow consumer, and a client may echo them).
bool valid_close_code(uint16_t code);

inline constexpr std::size_t kMaxControlPayload = 125;
inline constexpr std::size_t kMaxFrameHeader = 10;        // server frames: no mask key
inline constexpr std::size_t kMaxClientFrameHeader = 14;  // client frames: 4-byte mask key

// What consume() reports. One call per frame (control) or per complete message (data).
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // Every complete frame (data, continuation or control, empty ones included), before the
  // event it makes, if any. The server charges its per-connection rate limit here, so that
  // a flood of frames that make no message (unsolicited pongs, empty continuations of an
  // endless message) costs what a flood of messages costs. To refuse the frame, stop() the
  // reader (e.g. by closing): consume() then reports nothing more.
  virtual void on_frame(Opcode /*opcode*/) {}
  virtual void on_text(std::string_view message) = 0;
  virtual void on_binary(std::string_view message) = 0;
  // The server answers with pong_frame(payload).
  virtual void on_ping(std::string_view payload) = 0;
  // Unsolicited pongs are allowed (RFC 6455 §5.5.3); the server need do nothing.
  virtual void on_pong(std::string_view /*payload*/) {}
  // The peer started the close handshake; code is kCloseNoStatus when the frame had none.
  // The server answers with close_frame(code) and closes once that is written.
  virtual void on_close(uint16_t code, std::string_view reason) = 0;
  // The peer broke the protocol. The server sends close_frame(close_code, reason) and
  // closes: 1002 (framing), 1007 (bad UTF-8) or 1009 (message over the limit).
  virtual void on_protocol_error(uint16_t close_code, std::string_view reason) = 0;
};

// Per-connection state of the client frame parser; see the top of this file.
class FrameReader {
 public:
  static constexpr uint32_t kDefaultMaxMessage = 64 * 1024;

  explicit FrameReader(uint32_t max_message = kDefaultMaxMessage) : max_message_(max_message) {}

  // Handles every complete frame at the start of `in` and returns how many bytes the caller
  // may drop; the rest (part of one frame) must be passed again, first, with what follows.
  // `assembly` is the caller's slot for a fragmented message: pass the same one every time.
  std::size_t consume(std::span<char> in, std::unique_ptr<std::string> &assembly, FrameSink &sink);

  // Ends reading, e.g. from inside a callback when the server decides to close: consume()
  // returns after the current event and reports nothing more.
  void stop() { finished_ = true; }
  bool finished() const { return finished_; }
  // A fragmented message has started and not finished (the assembly string exists).
  bool message_in_flight() const { return in_flight_ != Opcode::kContinuation; }
  uint32_t max_message() const { return max_message_; }

 private:
  std::size_t fail(std::span<char> in, std::unique_ptr<std::string> &assembly, FrameSink &sink,
                   uint16_t code, std::string_view reason);
  bool on_fragment(std::string_view payload, bool fin, std::unique_ptr<std::string> &assembly);

  uint32_t max_message_;
  // Text message in flight: how much of *assembly is known to be valid, complete UTF-8, so
  // each fragment is checked once and a bad one fails before the message ends.
  uint32_t utf8_checked_ = 0;
  Opcode in_flight_ = Opcode::kContinuation;  // kText/kBinary while fragments arrive
  bool finished_ = false;
};

// ---- Writing (server to client: never masked, always FIN) ---------------------------------

struct FrameHeader {
  std::array<char, kMaxFrameHeader> bytes{};
  uint8_t size = 0;
  std::string_view view() const { return {bytes.data(), size}; }
};

// The header for one unfragmented frame of `payload_size` bytes, with the shortest length
// encoding (RFC 6455 §5.2 requires it of senders).
FrameHeader frame_header(Opcode opcode, uint64_t payload_size);

// A whole frame: header then payload. For small frames; a broadcast should be framed once
// with frame_header() and shared.
std::string encode_frame(Opcode opcode, std::string_view payload);

// A close frame. kCloseNoStatus gives an empty payload (the echo of a close that had no code);
// otherwise the code and `reason`, cut to 123 bytes without splitting a UTF-8 sequence.
std::string close_frame(uint16_t code, std::string_view reason = {});

// The answer to a ping: the same payload (at most 125 bytes, as consume() guarantees).
inline std::string pong_frame(std::string_view payload) {
  return encode_frame(Opcode::kPong, payload);
}
inline std::string text_frame(std::string_view text) { return encode_frame(Opcode::kText, text); }

}  // namespace kronop::daemon::ws
