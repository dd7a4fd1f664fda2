// Fuzz target for the durable log's blocks as the reader takes them from the file
// (common/log_block.h): kronopctl replay, REST history and rejoining clients read rows that
// anyone with access to the data directory may have changed. The first byte picks the row's
// format (plain or zstd); the rest is its data. Besides "no crash, no sanitizer report":
//  - a row is either refused with a reason or gives at least one message, seqs rising;
//  - what a row gives, encoded again, decodes to the same messages (the writer and the
//    reader agree on every field).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "log_block.h"

using namespace kronop;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  static LogBlockCodec codec;
  const int format = data[0] % 3;  // 2: an unknown format
  StoredMessage m;
  std::vector<StoredMessage> got;
  auto n = codec.decode(format, data + 1, size - 1, m, [&](const StoredMessage &r) {
    got.push_back(r);
    return true;
  });
  if (!n.ok()) {
    FUZZ_CHECK(!n.error().message.empty());
    return 0;
  }
  FUZZ_CHECK(format != 2);
  FUZZ_CHECK(n.value() == got.size() && !got.empty());
  for (std::size_t i = 1; i < got.size(); ++i) FUZZ_CHECK(got[i].seq > got[i - 1].seq);
  std::vector<const StoredMessage *> refs;
  for (const auto &r : got) refs.push_back(&r);
  const auto encoded = codec.encode(refs);
  const std::string again(encoded.data);
  std::vector<StoredMessage> round;
  auto n2 = codec.decode(static_cast<int>(encoded.format), again.data(), again.size(), m,
                         [&](const StoredMessage &r) {
                           round.push_back(r);
                           return true;
                         });
  FUZZ_CHECK(n2.ok() && round.size() == got.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(round[i].seq == got[i].seq && round[i].publish_time_ns == got[i].publish_time_ns &&
               round[i].event == got[i].event && round[i].producer_id == got[i].producer_id &&
               round[i].producer_seq == got[i].producer_seq &&
               round[i].priority == got[i].priority && round[i].body_kind == got[i].body_kind &&
               round[i].body == got[i].body);
  }
  return 0;
}
