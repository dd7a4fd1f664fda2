#include "redis_reply.h"

#include <cerrno>
#include <charconv>
#include <memory>
#include <new>
#include <string>

namespace kronop::daemon {

namespace {

std::string_view str(const redisReply &r) {
  if (r.type != REDIS_REPLY_STRING && r.type != REDIS_REPLY_STATUS && r.type != REDIS_REPLY_ERROR) {
    return {};
  }
  if (r.str == nullptr) return {};
  return {r.str, r.len};
}

const redisReply *element(const redisReply &r, std::size_t i) {
  if (r.type != REDIS_REPLY_ARRAY || i >= r.elements || r.element == nullptr) return nullptr;
  return r.element[i];
}

bool is_bulk(const redisReply *r) { return r != nullptr && r->type == REDIS_REPLY_STRING; }

// The values made for the reply being read (the reader's privdata), and whether a bound
// was hit: the reader then reports "out of memory", which is not what happened.
struct ReplyBudget {
  std::size_t values = 0;
  bool exceeded = false;
  redisReplyObjectFunctions *defaults = nullptr;
};

ReplyBudget *budget_of(const redisReadTask *task) {
  return static_cast<ReplyBudget *>(task->privdata);
}

bool spend(const redisReadTask *task) {
  ReplyBudget *b = budget_of(task);
  if (++b->values <= kMaxReplyValues) return true;
  b->exceeded = true;
  return false;
}

// hiredis's own functions, behind the bounds.
void *bounded_string(const redisReadTask *task, char *s, std::size_t len) {
  return spend(task) ? budget_of(task)->defaults->createString(task, s, len) : nullptr;
}
void *bounded_array(const redisReadTask *task, int elements) {
  if (elements < 0 || elements > kMaxReplyArray) {
    budget_of(task)->exceeded = true;
    return nullptr;
  }
  return spend(task) ? budget_of(task)->defaults->createArray(task, elements) : nullptr;
}
void *bounded_integer(const redisReadTask *task, long long value) {
  return spend(task) ? budget_of(task)->defaults->createInteger(task, value) : nullptr;
}
void *bounded_nil(const redisReadTask *task) {
  return spend(task) ? budget_of(task)->defaults->createNil(task) : nullptr;
}
void free_object(void *reply) { freeReplyObject(reply); }

redisReplyObjectFunctions bounded_functions = {bounded_string, bounded_array, bounded_integer,
                                               bounded_nil, free_object};

}  // namespace

void ReaderDeleter::operator()(redisReader *r) const {
  delete static_cast<ReplyBudget *>(r->privdata);
  redisReaderFree(r);
}

RedisReaderPtr make_redis_reader() {
  RedisReaderPtr reader(redisReaderCreate());
  if (!reader) throw std::bad_alloc();
  auto budget = std::make_unique<ReplyBudget>();
  budget->defaults = reader->fn;  // hiredis's default table (redisReply objects)
  reader->fn = &bounded_functions;
  reader->privdata = budget.release();
  return reader;
}

Result<RedisReplyPtr> next_redis_reply(redisReader &reader) {
  auto *budget = static_cast<ReplyBudget *>(reader.privdata);
  void *raw = nullptr;
  if (redisReaderGetReply(&reader, &raw) != REDIS_OK) {
    if (budget->exceeded) {
      return Error{-E2BIG, "a reply of more than " + std::to_string(kMaxReplyValues) +
                               " values, or an array length below 0 or above " +
                               std::to_string(kMaxReplyArray)};
    }
    std::string why = reader.errstr[0] != '\0' ? reader.errstr : "unreadable reply";
    return Error{-EPROTO, "not RESP: " + why};
  }
  if (raw != nullptr) budget->values = 0;
  return RedisReplyPtr(static_cast<redisReply *>(raw));
}

Push classify_push(const redisReply &reply) {
  Push p;
  if (reply.type == REDIS_REPLY_ERROR) {
    p.kind = PushKind::kError;
    p.payload = str(reply);
    return p;
  }
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 2) return p;
  const redisReply *head = element(reply, 0);
  if (!is_bulk(head)) return p;
  const std::string_view kind = str(*head);
  const redisReply *a = element(reply, 1);
  const redisReply *b = element(reply, 2);
  const redisReply *c = element(reply, 3);
  if ((kind == "message" || kind == "smessage") && reply.elements == 3 && is_bulk(a) &&
      is_bulk(b)) {
    p.kind = kind == "message" ? PushKind::kMessage : PushKind::kShardMessage;
    p.sharded = kind == "smessage";
    p.channel = str(*a);
    p.payload = str(*b);
  } else if (kind == "pmessage" && reply.elements == 4 && is_bulk(a) && is_bulk(b) && is_bulk(c)) {
    p.kind = PushKind::kMessage;
    p.channel = str(*b);
    p.payload = str(*c);
  } else if ((kind == "subscribe" || kind == "ssubscribe" || kind == "psubscribe" ||
              kind == "unsubscribe" || kind == "sunsubscribe" || kind == "punsubscribe") &&
             reply.elements == 3 && b != nullptr && b->type == REDIS_REPLY_INTEGER &&
             (is_bulk(a) || (a != nullptr && a->type == REDIS_REPLY_NIL))) {
    const bool un =
        kind.substr(0, 2) == "un" || kind.substr(0, 3) == "sun" || kind.substr(0, 3) == "pun";
    p.kind = un ? PushKind::kUnsubscribed : PushKind::kSubscribed;
    p.sharded = kind.front() == 's';
    p.channel = is_bulk(a) ? str(*a) : std::string_view();
    p.count = b->integer;
  } else if (kind == "pong" && reply.elements == 2 && is_bulk(a)) {
    p.kind = PushKind::kPong;
    p.payload = str(*a);
  }
  return p;
}

bool reply_is_status(const redisReply &reply, std::string_view text) {
  return reply.type == REDIS_REPLY_STATUS && str(reply) == text;
}

std::string_view reply_text(const redisReply &reply) {
  return reply.type == REDIS_REPLY_ERROR ? std::string_view() : str(reply);
}

bool reply_integer(const redisReply &reply, long long *out) {
  if (reply.type != REDIS_REPLY_INTEGER) return false;
  *out = reply.integer;
  return true;
}

bool parse_decimal_u64(std::string_view text, uint64_t *out) {
  if (text.empty() || text.size() > 20) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool reply_u64(const redisReply &reply, uint64_t *out) {
  if (reply.type == REDIS_REPLY_INTEGER) {
    if (reply.integer < 0) return false;
    *out = static_cast<uint64_t>(reply.integer);
    return true;
  }
  if (reply.type != REDIS_REPLY_STRING && reply.type != REDIS_REPLY_STATUS) return false;
  return parse_decimal_u64(reply_text(reply), out);
}

std::string describe_reply(const redisReply &reply) {
  // Assigned and appended, never "literal" + std::string&&: GCC 12 at -O3 takes that insert
  // for an overlapping copy (-Wrestrict).
  std::string out;
  auto put = [&out](std::string_view what, std::string_view detail = {},
                    std::string_view after = {}) {
    out.assign(what);
    out.append(detail);
    out.append(after);
  };
  switch (reply.type) {
    case REDIS_REPLY_ERROR:
      put(str(reply));
      break;
    case REDIS_REPLY_STATUS:
      put("+", str(reply));
      break;
    case REDIS_REPLY_STRING:
      put("a string of ", std::to_string(reply.len), " bytes");
      break;
    case REDIS_REPLY_INTEGER:
      put("the integer ", std::to_string(reply.integer));
      break;
    case REDIS_REPLY_NIL:
      put("nil");
      break;
    case REDIS_REPLY_ARRAY:
      put("an array of ", std::to_string(reply.elements));
      break;
    default:
      put("a reply of type ", std::to_string(reply.type));
      break;
  }
  if (out.size() > 200) out.resize(200);
  for (char &c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

}  // namespace kronop::daemon
