// Fuzz target for the durable log's journal index as the reader and kronopd's open take it
// from the file (common/log_journal.h): a row's `frames` column, which anyone with access to
// the data directory may have changed. The first 4 bytes are the row's data size and the
// topic looked up; the rest is the index. Besides "no crash, no sanitizer report":
//  - parse() either refuses with a reason or gives frames in topic order, each inside the
//    row's data, with a seq range and a known format;
//  - find() agrees with parse() on every topic parse() gives (and finds nothing for a topic
//    it does not give, when parse() accepted the index);
//  - what parse() gives, encoded again, is the same index.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "log_journal.h"

using namespace kronop;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  const std::size_t data_size = (std::size_t{data[0]} << 8 | data[1]) * 16;
  const int64_t wanted = (int64_t{data[2]} << 8 | data[3]) % 64;
  const std::string_view index(reinterpret_cast<const char *>(data + 4), size - 4);
  auto frames = JournalIndex::parse(index, data_size);
  auto found = JournalIndex::find(index, data_size, wanted);
  if (!found.ok()) FUZZ_CHECK(!found.error().message.empty());
  if (!frames.ok()) {
    FUZZ_CHECK(!frames.error().message.empty());
    return 0;
  }
  int64_t previous = 0;
  bool has_wanted = false;
  for (const JournalFrame &f : frames.value()) {
    FUZZ_CHECK(f.topic_id > previous);
    previous = f.topic_id;
    FUZZ_CHECK(f.first_seq >= 1 && f.first_seq <= f.last_seq);
    FUZZ_CHECK(f.size > 0 && std::size_t{f.offset} + f.size <= data_size);
    FUZZ_CHECK(f.format == 0 || f.format == 1);
    auto one = JournalIndex::find(index, data_size, f.topic_id);
    FUZZ_CHECK(one.ok() && one.value() && one.value()->offset == f.offset &&
               one.value()->size == f.size && one.value()->last_seq == f.last_seq);
    has_wanted = has_wanted || f.topic_id == wanted;
  }
  FUZZ_CHECK(found.ok() && found.value().has_value() == has_wanted);
  FUZZ_CHECK(JournalIndex::encode(frames.value()) == index);
  return 0;
}
