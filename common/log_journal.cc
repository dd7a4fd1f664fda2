// The durable log's journal index; see log_journal.h.
#include "log_journal.h"

#include <algorithm>

#include "kronop_ipc.h"

namespace kronop {

namespace {

void put_u64(std::string &out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}

uint64_t get_u64(const char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

Error damaged(const std::string &what) {
  return Error{KRONOP_ESYS, "a journal row of the log is damaged: " + what};
}

// Entry `i` of `index`, checked against the row's data size.
Result<JournalFrame> entry(std::string_view index, std::size_t i, std::size_t data_size) {
  const char *p = index.data() + i * JournalIndex::kEntryBytes;
  JournalFrame f;
  f.topic_id = static_cast<int64_t>(get_u64(p));
  f.first_seq = get_u64(p + 8);
  f.last_seq = get_u64(p + 16);
  const uint64_t offset = get_u64(p + 24), size = get_u64(p + 32), format = get_u64(p + 40);
  if (f.topic_id <= 0) return damaged("a frame's topic id is not positive");
  if (f.first_seq == 0 || f.first_seq > f.last_seq)
    return damaged("a frame's seqs are not a range");
  if (size == 0 || offset > data_size || size > data_size - offset) {
    return damaged("a frame lies outside the row's data");
  }
  if (format > 1) return damaged("a frame's format is unknown");
  f.offset = static_cast<uint32_t>(offset);
  f.size = static_cast<uint32_t>(size);
  f.format = static_cast<int>(format);
  return f;
}

Result<std::size_t> entries(std::string_view index) {
  if (index.size() % JournalIndex::kEntryBytes != 0) {
    return damaged("its index is not a whole number of entries");
  }
  return index.size() / JournalIndex::kEntryBytes;
}

}  // namespace

std::string JournalIndex::encode(std::vector<JournalFrame> frames) {
  std::sort(frames.begin(), frames.end(),
            [](const JournalFrame &a, const JournalFrame &b) { return a.topic_id < b.topic_id; });
  std::string out;
  out.reserve(frames.size() * kEntryBytes);
  for (const JournalFrame &f : frames) {
    put_u64(out, static_cast<uint64_t>(f.topic_id));
    put_u64(out, f.first_seq);
    put_u64(out, f.last_seq);
    put_u64(out, f.offset);
    put_u64(out, f.size);
    put_u64(out, static_cast<uint64_t>(f.format));
  }
  return out;
}

Result<std::vector<JournalFrame>> JournalIndex::parse(std::string_view index,
                                                      std::size_t data_size) {
  auto n = entries(index);
  if (!n.ok()) return n.error();
  std::vector<JournalFrame> out;
  out.reserve(n.value());
  for (std::size_t i = 0; i < n.value(); ++i) {
    auto f = entry(index, i, data_size);
    if (!f.ok()) return f.error();
    if (!out.empty() && f.value().topic_id <= out.back().topic_id) {
      return damaged("its index is not in topic order");
    }
    out.push_back(f.value());
  }
  return out;
}

Result<std::optional<JournalFrame>> JournalIndex::find(std::string_view index,
                                                       std::size_t data_size, int64_t topic_id) {
  auto n = entries(index);
  if (!n.ok()) return n.error();
  std::size_t lo = 0, hi = n.value();
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    const auto id = static_cast<int64_t>(get_u64(index.data() + mid * kEntryBytes));
    if (id < topic_id) {
      lo = mid + 1;
    } else if (id > topic_id) {
      hi = mid;
    } else {
      auto f = entry(index, mid, data_size);
      if (!f.ok()) return f.error();
      return std::optional<JournalFrame>(f.value());
    }
  }
  return std::optional<JournalFrame>();
}

}  // namespace kronop
