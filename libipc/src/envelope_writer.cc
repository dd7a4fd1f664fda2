#include "envelope_writer.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <cstring>

namespace kronop::ipc::envelope_writer {
namespace {

using google::protobuf::io::CodedOutputStream;
using WFL = google::protobuf::internal::WireFormatLite;

constexpr uint32_t tag(int field, WFL::WireType type) { return WFL::MakeTag(field, type); }

std::size_t bytes_field_size(int field, std::size_t len) {
  return CodedOutputStream::VarintSize32(tag(field, WFL::WIRETYPE_LENGTH_DELIMITED)) +
         CodedOutputStream::VarintSize64(len) + len;
}

uint8_t *write_bytes_field(int field, std::string_view v, uint8_t *out) {
  out = CodedOutputStream::WriteTagToArray(tag(field, WFL::WIRETYPE_LENGTH_DELIMITED), out);
  out = CodedOutputStream::WriteVarint64ToArray(v.size(), out);
  std::memcpy(out, v.data(), v.size());
  return out + v.size();
}

}  // namespace

std::size_t identity_size(const Identity &id) {
  return 2 * (1 + 8) + 1 + CodedOutputStream::VarintSize64(id.producer_seq);
}

uint8_t *write_identity(const Identity &id, uint8_t *out) {
  out = CodedOutputStream::WriteTagToArray(tag(kProducerId, WFL::WIRETYPE_FIXED64), out);
  out = CodedOutputStream::WriteLittleEndian64ToArray(id.producer_id, out);
  out = CodedOutputStream::WriteTagToArray(tag(kProducerSeq, WFL::WIRETYPE_VARINT), out);
  out = CodedOutputStream::WriteVarint64ToArray(id.producer_seq, out);
  out = CodedOutputStream::WriteTagToArray(tag(kPublishTime, WFL::WIRETYPE_FIXED64), out);
  return CodedOutputStream::WriteLittleEndian64ToArray(id.publish_time_ns, out);
}

std::size_t json_envelope_size(std::string_view topic, std::string_view event,
                               std::string_view json, int priority, const Identity &id) {
  std::size_t n = bytes_field_size(kTopic, topic.size()) + bytes_field_size(kEvent, event.size()) +
                  identity_size(id) + bytes_field_size(kJson, json.size());
  if (priority != 0) n += 2;  // tag + one-byte varint (priorities are 0..3)
  return n;
}

uint8_t *write_json_envelope(std::string_view topic, std::string_view event, std::string_view json,
                             int priority, const Identity &id, uint8_t *out) {
  out = write_bytes_field(kTopic, topic, out);
  out = write_bytes_field(kEvent, event, out);
  out = write_identity(id, out);
  if (priority != 0) {
    out = CodedOutputStream::WriteTagToArray(tag(kPriority, WFL::WIRETYPE_VARINT), out);
    out = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(priority), out);
  }
  return write_bytes_field(kJson, json, out);
}

}  // namespace kronop::ipc::envelope_writer
