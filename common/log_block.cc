// The durable log's blocks; see log_block.h.
#include "log_block.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <zstd.h>

#include <cstring>

#include "kronop/v1/log.pb.h"
#include "kronop_ipc.h"

namespace kronop {

namespace {

using google::protobuf::internal::WireFormatLite;
using Wire = WireFormatLite;

// LogRecord's field numbers (log.proto).
enum Field : int {
  kSeq = 1,
  kPublishTime = 2,
  kEvent = 3,
  kProducerId = 4,
  kProducerSeq = 5,
  kPriority = 6,
  kBodyKind = 7,
  kBody = 8,
};

// Every LogRecord and LogBlock field number is below 16: one byte of tag each.
constexpr std::size_t kTag = 1;

std::size_t varint_field(uint64_t v) { return v == 0 ? 0 : kTag + Wire::UInt64Size(v); }
std::size_t int32_field(int32_t v) { return v == 0 ? 0 : kTag + Wire::Int32Size(v); }
std::size_t bytes_field(std::size_t n) { return n == 0 ? 0 : kTag + Wire::LengthDelimitedSize(n); }

std::size_t record_size(const StoredMessage &m) {
  return varint_field(m.seq) + varint_field(m.publish_time_ns) + bytes_field(m.event.size()) +
         varint_field(m.producer_id) + varint_field(m.producer_seq) + int32_field(m.priority) +
         varint_field(static_cast<uint64_t>(m.body_kind)) + bytes_field(m.body.size());
}

uint8_t *put_varint(int field, uint64_t v, uint8_t *p) {
  return v == 0 ? p : Wire::WriteUInt64ToArray(field, v, p);
}

uint8_t *put_bytes(int field, std::string_view s, uint8_t *p) {
  if (s.empty()) return p;
  p = Wire::WriteTagToArray(field, Wire::WIRETYPE_LENGTH_DELIMITED, p);
  p = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(s.size()),
                                                                    p);
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

uint8_t *put_record(const StoredMessage &m, uint8_t *p) {
  p = Wire::WriteTagToArray(1, Wire::WIRETYPE_LENGTH_DELIMITED, p);
  p = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(record_size(m)), p);
  p = put_varint(kSeq, m.seq, p);
  p = put_varint(kPublishTime, m.publish_time_ns, p);
  p = put_bytes(kEvent, m.event, p);
  p = put_varint(kProducerId, m.producer_id, p);
  p = put_varint(kProducerSeq, m.producer_seq, p);
  if (m.priority != 0) p = Wire::WriteInt32ToArray(kPriority, m.priority, p);
  p = put_varint(kBodyKind, static_cast<uint64_t>(m.body_kind), p);
  return put_bytes(kBody, m.body, p);
}

}  // namespace

struct LogBlockCodec::Parsed {
  v1::LogBlock block;
};

LogBlockCodec::LogBlockCodec(int zstd_level)
    : level_(zstd_level),
      cctx_(ZSTD_createCCtx()),
      dctx_(ZSTD_createDCtx()),
      parsed_(std::make_unique<Parsed>()) {}

LogBlockCodec::~LogBlockCodec() {
  ZSTD_freeCCtx(cctx_);
  ZSTD_freeDCtx(dctx_);
}

LogBlockCodec::Encoded LogBlockCodec::encode(std::span<const StoredMessage *const> messages) {
  std::size_t total = 0;
  for (const StoredMessage *m : messages)
    total += kTag + Wire::LengthDelimitedSize(record_size(*m));
  raw_.resize(total);
  auto *p = reinterpret_cast<uint8_t *>(raw_.data());
  for (const StoredMessage *m : messages) p = put_record(*m, p);
  return compress(raw_);
}

void LogBlockCodec::append(const StoredMessage &m, std::string &raw) {
  const std::size_t at = raw.size();
  raw.resize(at + kTag + Wire::LengthDelimitedSize(record_size(m)));
  put_record(m, reinterpret_cast<uint8_t *>(raw.data() + at));
}

LogBlockCodec::Encoded LogBlockCodec::compress(std::string_view raw) {
  Encoded out;
  out.raw = raw;
  out.data = raw;
  // A block of a message or two gains little from zstd (a frame's header and a cold start),
  // and setting a context up costs more than the rest of its encoding.
  if (raw.size() < kMinCompressed) return out;
  compressed_.resize(ZSTD_compressBound(raw.size()));
  const std::size_t n = ZSTD_compressCCtx(cctx_, compressed_.data(), compressed_.size(), raw.data(),
                                          raw.size(), level_);
  if (!ZSTD_isError(n) && n < raw.size()) {
    out.format = Format::kZstd;
    out.data = std::string_view(compressed_.data(), n);
  }
  return out;
}

Result<uint64_t> LogBlockCodec::decode(int format, const void *data, std::size_t size,
                                       StoredMessage &m,
                                       const std::function<bool(const StoredMessage &)> &fn) {
  auto damaged = [](const std::string &what) {
    return Error{KRONOP_ESYS, "a block of the log is damaged: " + what};
  };
  const void *raw = data;
  std::size_t raw_size = size;
  if (format == static_cast<int>(Format::kZstd)) {
    const unsigned long long n = ZSTD_getFrameContentSize(data, size);
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN) {
      return damaged("not a zstd frame with its size");
    }
    if (n > kMaxDecodedBytes) return damaged("it claims " + std::to_string(n) + " bytes");
    raw_.resize(n);
    const std::size_t got = ZSTD_decompressDCtx(dctx_, raw_.data(), raw_.size(), data, size);
    if (ZSTD_isError(got) || got != n) return damaged("its zstd frame does not decompress");
    raw = raw_.data();
    raw_size = raw_.size();
  } else if (format != static_cast<int>(Format::kPlain)) {
    return damaged("unknown format " + std::to_string(format));
  } else if (size > kMaxDecodedBytes) {
    return damaged("it holds " + std::to_string(size) + " bytes");
  }
  v1::LogBlock &block = parsed_->block;
  if (!block.ParseFromArray(raw, static_cast<int>(raw_size))) return damaged("it does not parse");
  if (block.records_size() == 0) return damaged("it holds no message");
  uint64_t given = 0, last_seq = 0;
  for (const v1::LogRecord &r : block.records()) {
    if (r.seq() <= last_seq) return damaged("its seqs are out of order");
    if (r.body_kind() > 0xff) return damaged("a body kind is out of range");
    last_seq = r.seq();
    m.seq = r.seq();
    m.publish_time_ns = r.publish_time_ns();
    m.event = r.event();
    m.producer_id = r.producer_id();
    m.producer_seq = r.producer_seq();
    m.priority = r.priority();
    m.body_kind = static_cast<BodyKind>(r.body_kind());
    m.body = r.body();
    ++given;
    if (!fn(m)) break;
  }
  return given;
}

}  // namespace kronop
