// The durable log's journal (kronopd/log_store.h): a row per transaction that holds, for each
// topic with only a few messages in it, those messages as a frame (encoded as a block is,
// common/log_block.h), and an index of its frames: what a reader needs to find one topic's
// frame without decoding the others. A topic's frames are moved into blocks once they add up
// to a block's worth or are a second old; until then readers take them from here.
//
// The index is a run of fixed-size little-endian entries, sorted by topic id (one frame per
// topic per row). It comes from a file anyone with access may have changed: parsing checks
// sizes, order and bounds, and says what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"

namespace kronop {

struct JournalFrame {
  int64_t topic_id = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint32_t offset = 0;  // in the row's data
  uint32_t size = 0;
  int format = 0;  // LogBlockCodec::Format
};

class JournalIndex {
 public:
  // topic id, first seq, last seq, offset, size, format: 8 bytes each.
  static constexpr std::size_t kEntryBytes = 48;

  // The index of `frames` (any order; sorted here).
  static std::string encode(std::vector<JournalFrame> frames);

  // Every frame of a row whose data is `data_size` bytes, in topic id order.
  static Result<std::vector<JournalFrame>> parse(std::string_view index, std::size_t data_size);

  // The frame of `topic_id`, if the row has one (a binary search: the other entries are not
  // checked).
  static Result<std::optional<JournalFrame>> find(std::string_view index, std::size_t data_size,
                                                  int64_t topic_id);
};

}  // namespace kronop
