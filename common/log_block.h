// One row of the durable log's `blocks` table (kronopd/log_store.h): consecutive messages of
// one topic, logged in one transaction, encoded together (kronop.v1.LogBlock,
// proto/kronop/v1/log.proto) and compressed together, so that zstd sees kilobytes rather
// than one 200-byte body and SQLite writes one row rather than hundreds.
//
// The writer encodes straight from its StoredMessages (no message objects in between); the
// reader parses with the generated LogBlock. A row comes from a file anyone with access may
// have changed: decoding checks sizes, order and kinds, and says what is wrong.
//
// One codec per thread (it keeps its zstd contexts and buffers).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kronop/result.h"
#include "stored_message.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace kronop {

// What a block's row says of its messages besides their bytes (the `blocks` columns).
struct BlockSpan {
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t count = 0;
  uint64_t min_time_ns = UINT64_MAX;  // publish times (the producers' clocks)
  uint64_t max_time_ns = 0;

  // After the messages already counted (seq order).
  void add(const StoredMessage &m) {
    if (count++ == 0) first_seq = m.seq;
    last_seq = m.seq;
    min_time_ns = std::min(min_time_ns, m.publish_time_ns);
    max_time_ns = std::max(max_time_ns, m.publish_time_ns);
  }
};

class LogBlockCodec {
 public:
  // How a row's data column is stored.
  enum class Format : int { kPlain = 0, kZstd = 1 };
  // The most a block may hold decoded: the writer stays far below it (log_store.h), and a
  // damaged row claiming more is refused rather than allocated.
  static constexpr std::size_t kMaxDecodedBytes = 64u << 20;
  // Smaller blocks are stored as they are.
  static constexpr std::size_t kMinCompressed = 1024;

  explicit LogBlockCodec(int zstd_level = 1);
  ~LogBlockCodec();
  LogBlockCodec(const LogBlockCodec &) = delete;
  LogBlockCodec &operator=(const LogBlockCodec &) = delete;

  // Encodes `messages` (one topic's, in seq order; topic and epoch are not stored) and
  // compresses the result when that makes it smaller. The data stays valid until the next
  // call.
  struct Encoded {
    Format format = Format::kPlain;
    std::string_view data;
    std::string_view raw;  // encoded, before compression
  };
  Encoded encode(std::span<const StoredMessage *const> messages);
  // Appends `m` to `raw`, encoded as encode() does before compressing: the encodings of two
  // runs of messages, one after the other, are the encoding of both.
  static void append(const StoredMessage &m, std::string &raw);
  // Compresses messages already encoded (append) as encode() would; the data stays valid
  // until the next call, and may be `raw` itself.
  Encoded compress(std::string_view raw);

  // Decodes a row, calling fn for each message in order until it returns false; each
  // message is `m` with the row's fields set (the caller sets topic and epoch). Returns how
  // many fn was given, or what is wrong with the row.
  Result<uint64_t> decode(int format, const void *data, std::size_t size, StoredMessage &m,
                          const std::function<bool(const StoredMessage &)> &fn);

 private:
  int level_;
  ZSTD_CCtx_s *cctx_ = nullptr;
  ZSTD_DCtx_s *dctx_ = nullptr;
  std::string raw_;         // encode's output, decode's decompressed input
  std::string compressed_;  // encode's compressed output
  struct Parsed;            // the generated LogBlock, reused
  std::unique_ptr<Parsed> parsed_;
};

}  // namespace kronop
