// Fuzz target for what kronopd reads from Redis (kronopd/redis_reply.h): the bytes a Redis
// server — or a peer that is not one — sends, fed to the bounded reply reader in two reads
// (the first byte chooses the cut), each whole reply classified as a subscriber connection
// classifies it, a message's payload read as a numbered message ("EPOCH:SEQ:ENVELOPE"),
// and each array read as the numbering, position, history, heartbeat and user-record
// scripts' answers and described as the log lines describe it. Checks: a reader that refused
// the bytes refuses everything after (the link closes the connection then); a classified
// push's views lie inside the reply; no reply holds more values than the bound allows.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster_history.h"
#include "cluster_members.h"
#include "cluster_numbering.h"
#include "cluster_users.h"
#include "fuzz_check.h"
#include "redis_reply.h"

namespace {

using kronop::daemon::Push;
using kronop::daemon::PushKind;

std::size_t values_in(const redisReply &r) {
  std::size_t n = 1;
  if (r.type == REDIS_REPLY_ARRAY && r.element != nullptr) {
    for (std::size_t i = 0; i < r.elements; ++i) {
      if (r.element[i] != nullptr) n += values_in(*r.element[i]);
    }
  }
  return n;
}

bool inside(std::string_view view, const redisReply &r) {
  if (view.empty()) return true;
  if (r.str != nullptr && view.data() >= r.str && view.data() + view.size() <= r.str + r.len) {
    return true;
  }
  if (r.type == REDIS_REPLY_ARRAY && r.element != nullptr) {
    for (std::size_t i = 0; i < r.elements; ++i) {
      if (r.element[i] != nullptr && inside(view, *r.element[i])) return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const std::string_view input(reinterpret_cast<const char *>(data) + 1, size - 1);
  const std::size_t split = input.empty() ? 0 : data[0] % input.size();
  auto reader = kronop::daemon::make_redis_reader();
  bool refused = false;
  for (std::string_view chunk : {input.substr(0, split), input.substr(split)}) {
    if (refused) break;
    FUZZ_CHECK(redisReaderFeed(reader.get(), chunk.data(), chunk.size()) == REDIS_OK);
    for (;;) {
      auto next = kronop::daemon::next_redis_reply(*reader);
      if (!next.ok()) {
        refused = true;
        FUZZ_CHECK(!next.error().message.empty());
        break;
      }
      kronop::daemon::RedisReplyPtr reply = std::move(next).value();
      if (!reply) break;
      FUZZ_CHECK(values_in(*reply) <= kronop::daemon::kMaxReplyValues);
      const Push p = kronop::daemon::classify_push(*reply);
      FUZZ_CHECK(inside(p.channel, *reply) && inside(p.payload, *reply));
      if (p.kind == PushKind::kMessage || p.kind == PushKind::kShardMessage) {
        FUZZ_CHECK(reply->type == REDIS_REPLY_ARRAY);
        auto m = kronop::daemon::parse_numbered_message(p.payload);
        if (m.ok()) {
          FUZZ_CHECK(m.value().epoch != 0 && m.value().seq != 0);
          FUZZ_CHECK(inside(m.value().envelope, *reply));
        }
      }
      if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        auto numbered = kronop::daemon::read_numbering_reply(*reply, reply->elements - 1);
        if (numbered.ok()) {
          FUZZ_CHECK(numbered.value().epoch != 0);
          FUZZ_CHECK(numbered.value().seqs.size() == reply->elements - 1);
        }
      }
      // The position and history scripts' answers (cluster_history.h); the range comes from
      // the first byte, as a node asks for at most --max-recovery-messages.
      if (auto at = kronop::daemon::read_position_reply(*reply); at.ok()) {
        FUZZ_CHECK(at.value().epoch != 0);
      }
      const uint64_t after = data[0] % 8, until = after + data[0] % 64;
      if (auto h = kronop::daemon::read_history_reply(*reply, after, until); h.ok()) {
        const auto &entries = h.value().entries;
        FUZZ_CHECK(entries.size() <= until - after);
        FUZZ_CHECK(h.value().epoch != 0 || entries.empty());
        uint64_t previous = after;
        for (const auto &e : entries) {
          FUZZ_CHECK(e.seq > previous && e.seq <= until);
          previous = e.seq;
        }
      }
      // The members' heartbeat answer (cluster_members.h), with a small bound.
      if (auto m = kronop::daemon::read_heartbeat_reply(*reply, 4); m.ok()) {
        FUZZ_CHECK(m.value().members.size() <= 4);
        for (const auto &member : m.value().members) {
          FUZZ_CHECK(!member.id.empty() && member.id.size() <= 64);
          FUZZ_CHECK(member.address.size() <= 512);
        }
      }
      // A user's record as the read script answers it (cluster_users.h).
      if (auto u = kronop::daemon::read_user_record(*reply, "u", {"Fa"}, data[0], 7); u.ok()) {
        if (const auto &user = u.value()) {
          FUZZ_CHECK(user->user_id == "u" && user->activity.size() <= 1024);
          FUZZ_CHECK(user->sockets == 0 || user->last_seen_ms == 7);
          FUZZ_CHECK(user->sockets > 0 ||
                     user->status != kronop::daemon::PresenceHub::Status::kOnline);
        }
      }
      uint64_t number = 0;
      if (kronop::daemon::reply_u64(*reply, &number)) {
        FUZZ_CHECK(reply->type == REDIS_REPLY_INTEGER || reply->type == REDIS_REPLY_STRING ||
                   reply->type == REDIS_REPLY_STATUS);
      }
      const std::string described = kronop::daemon::describe_reply(*reply);
      FUZZ_CHECK(described.size() <= 200);
      long long integer = 0;
      (void)kronop::daemon::reply_integer(*reply, &integer);
      (void)kronop::daemon::reply_text(*reply);
    }
  }
  return 0;
}
