// The JSON payload codec; the rules are in payload_codec.h.
//
// Both directions walk the message with protobuf reflection (Descriptor / Reflection), so
// every message of the schema, present and future, follows the same rules; JSON text is read
// by simdjson (a DOM parse, then the walk), never by hand. Writing appends to one string.
#include "payload_codec.h"

#include <google/protobuf/descriptor.h>
#include <openssl/evp.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kronop/v1/api.pb.h"
#include "kronop/v1/control.pb.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"

namespace kronop {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// ---- Writing ----

// 64-bit identifiers stay strings: JavaScript numbers are exact only up to 2^53.
bool is_identifier(const FieldDescriptor &f) { return f.name().ends_with("_id"); }

template <typename T>
void append_number(std::string &out, T v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? end : buf);
}

template <typename T>
void append_floating(std::string &out, T v) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    append_number(out, v);  // shortest form that reads back exactly
  }
}

void append_base64(std::string &out, std::string_view bytes) {
  std::string b64(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(b64.data()),
                                reinterpret_cast<const unsigned char *>(bytes.data()),
                                static_cast<int>(bytes.size()));
  b64.resize(static_cast<std::size_t>(n));
  out += '"';
  out += b64;
  out += '"';
}

void append_enum(std::string &out, const FieldDescriptor &f, int number) {
  const EnumValueDescriptor *v = f.enum_type()->FindValueByNumber(number);
  if (v == nullptr) {
    append_number(out, number);
  } else {
    append_json_string(out, enum_word(*v));
  }
}

void append_message(std::string &out, const Message &m, bool every_field);

// One value of `f`: the field itself, an element (index >= 0) of a repeated field.
void append_value(std::string &out, const Message &m, const FieldDescriptor &f, int index,
                  bool every_field) {
  const Reflection &r = *m.GetReflection();
  const bool rep = index >= 0;
  switch (f.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      append_number(out, rep ? r.GetRepeatedInt32(m, &f, index) : r.GetInt32(m, &f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      append_number(out, rep ? r.GetRepeatedUInt32(m, &f, index) : r.GetUInt32(m, &f));
      break;
    case FieldDescriptor::CPPTYPE_INT64: {
      const int64_t v = rep ? r.GetRepeatedInt64(m, &f, index) : r.GetInt64(m, &f);
      if (is_identifier(f)) out += '"';
      append_number(out, v);
      if (is_identifier(f)) out += '"';
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      const uint64_t v = rep ? r.GetRepeatedUInt64(m, &f, index) : r.GetUInt64(m, &f);
      if (is_identifier(f)) out += '"';
      append_number(out, v);
      if (is_identifier(f)) out += '"';
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
      append_floating(out, rep ? r.GetRepeatedDouble(m, &f, index) : r.GetDouble(m, &f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      append_floating(out, rep ? r.GetRepeatedFloat(m, &f, index) : r.GetFloat(m, &f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out += (rep ? r.GetRepeatedBool(m, &f, index) : r.GetBool(m, &f)) ? "true" : "false";
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      append_enum(out, f, rep ? r.GetRepeatedEnumValue(m, &f, index) : r.GetEnumValue(m, &f));
      break;
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string &s = rep ? r.GetRepeatedStringReference(m, &f, index, &scratch)
                                 : r.GetStringReference(m, &f, &scratch);
      if (f.type() == FieldDescriptor::TYPE_BYTES) {
        append_base64(out, s);
      } else {
        append_json_string(out, s);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      append_message(out, rep ? r.GetRepeatedMessage(m, &f, index) : r.GetMessage(m, &f),
                     every_field);
      break;
  }
}

// A map key as a JSON object key: its text, quoted.
std::string map_key_text(const Message &entry) {
  const FieldDescriptor &k = *entry.GetDescriptor()->map_key();
  const Reflection &r = *entry.GetReflection();
  std::string text;
  switch (k.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return r.GetString(entry, &k);
    case FieldDescriptor::CPPTYPE_BOOL:
      return r.GetBool(entry, &k) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_INT32:
      append_number(text, r.GetInt32(entry, &k));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      append_number(text, r.GetUInt32(entry, &k));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      append_number(text, r.GetInt64(entry, &k));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      append_number(text, r.GetUInt64(entry, &k));
      break;
    default:
      break;
  }
  return text;
}

void append_field(std::string &out, const Message &m, const FieldDescriptor &f, bool every_field) {
  const Reflection &r = *m.GetReflection();
  append_json_string(out, f.name());
  out += ':';
  if (f.is_map()) {
    // Sorted by key: the same map prints the same text whatever its hash order.
    std::vector<std::pair<std::string, const Message *>> entries;
    for (int i = 0, n = r.FieldSize(m, &f); i < n; ++i) {
      const Message &e = r.GetRepeatedMessage(m, &f, i);
      entries.emplace_back(map_key_text(e), &e);
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto &a, const auto &b) { return a.first < b.first; });
    const FieldDescriptor &value = *f.message_type()->map_value();
    out += '{';
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (i > 0) out += ',';
      append_json_string(out, entries[i].first);
      out += ':';
      append_value(out, *entries[i].second, value, -1, every_field);
    }
    out += '}';
  } else if (f.is_repeated()) {
    out += '[';
    for (int i = 0, n = r.FieldSize(m, &f); i < n; ++i) {
      if (i > 0) out += ',';
      append_value(out, m, f, i, every_field);
    }
    out += ']';
  } else {
    append_value(out, m, f, -1, every_field);
  }
}

void append_message(std::string &out, const Message &m, bool every_field) {
  const Reflection &r = *m.GetReflection();
  std::vector<const FieldDescriptor *> fields;
  if (every_field) {
    const Descriptor &d = *m.GetDescriptor();
    for (int i = 0; i < d.field_count(); ++i) {
      const FieldDescriptor *f = d.field(i);
      // As protobuf's printer: an unset sub-message or oneof member is left out.
      const bool optional_part =
          !f->is_repeated() && (f->message_type() != nullptr || f->containing_oneof() != nullptr);
      if (!optional_part || r.HasField(m, f)) fields.push_back(f);
    }
  } else {
    r.ListFields(m, &fields);
  }
  out += '{';
  bool first = true;
  for (const FieldDescriptor *f : fields) {
    if (!first) out += ',';
    first = false;
    append_field(out, m, *f, every_field);
  }
  out += '}';
}

// ---- Reading ----

bool fail(std::string *error, std::string why) {
  if (error != nullptr) *error = std::move(why);
  return false;
}

// A JSON integer (a number, or a string of digits as protobuf's JSON mapping writes 64-bit
// ones) that fits T; doubles with an integral value count too (1e3).
template <typename T>
bool read_integer(simdjson::dom::element v, T *out) {
  static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>);
  switch (v.type()) {
    case simdjson::dom::element_type::INT64: {
      const int64_t i = int64_t(v);
      if (std::is_unsigned_v<T> && i < 0) return false;
      *out = static_cast<T>(i);
      return true;
    }
    case simdjson::dom::element_type::UINT64: {  // above INT64_MAX
      if (std::is_signed_v<T>) return false;
      *out = static_cast<T>(uint64_t(v));
      return true;
    }
    case simdjson::dom::element_type::DOUBLE: {
      // T's range as doubles: [-2^63, 2^63) or [0, 2^64).
      constexpr double kLow = std::is_signed_v<T> ? -9.2233720368547758e18 : 0.0;
      constexpr double kEnd = std::is_signed_v<T> ? 9.2233720368547758e18 : 1.8446744073709552e19;
      const double d = double(v);
      if (d != std::trunc(d) || d < kLow || d >= kEnd) return false;
      *out = static_cast<T>(d);
      return true;
    }
    case simdjson::dom::element_type::STRING: {
      const std::string_view s = std::string_view(v);
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
      return ec == std::errc() && end == s.data() + s.size() && !s.empty();
    }
    default:
      return false;
  }
}

bool read_floating(simdjson::dom::element v, double *out) {
  switch (v.type()) {
    case simdjson::dom::element_type::INT64:
      *out = static_cast<double>(int64_t(v));
      return true;
    case simdjson::dom::element_type::UINT64:
      *out = static_cast<double>(uint64_t(v));
      return true;
    case simdjson::dom::element_type::DOUBLE:
      *out = double(v);
      return true;
    case simdjson::dom::element_type::STRING: {
      const std::string_view s = std::string_view(v);
      if (s == "NaN") {
        *out = std::numeric_limits<double>::quiet_NaN();
      } else if (s == "Infinity" || s == "-Infinity") {
        *out = s[0] == '-' ? -HUGE_VAL : HUGE_VAL;
      } else {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
        return ec == std::errc() && end == s.data() + s.size() && !s.empty();
      }
      return true;
    }
    default:
      return false;
  }
}

bool read_message(simdjson::dom::object obj, Message *m, std::string *error);

// A JSON value into field `f` of `m` (appended when repeated).
bool read_value(simdjson::dom::element v, Message *m, const FieldDescriptor &f,
                std::string *error) {
  const Reflection &r = *m->GetReflection();
  const bool rep = f.is_repeated();
  auto bad = [&](const char *what) { return fail(error, f.name() + " must be " + what); };
  switch (f.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t i = 0;
      const bool narrow = f.cpp_type() == FieldDescriptor::CPPTYPE_INT32;
      if (!read_integer(v, &i) || (narrow && (i < INT32_MIN || i > INT32_MAX))) {
        return bad(narrow ? "a 32-bit integer" : "a 64-bit integer");
      }
      if (narrow) {
        rep ? r.AddInt32(m, &f, static_cast<int32_t>(i))
            : r.SetInt32(m, &f, static_cast<int32_t>(i));
      } else {
        rep ? r.AddInt64(m, &f, i) : r.SetInt64(m, &f, i);
      }
      return true;
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t u = 0;
      const bool narrow = f.cpp_type() == FieldDescriptor::CPPTYPE_UINT32;
      if (!read_integer(v, &u) || (narrow && u > UINT32_MAX)) {
        return bad(narrow ? "a non-negative 32-bit integer" : "a non-negative 64-bit integer");
      }
      if (narrow) {
        rep ? r.AddUInt32(m, &f, static_cast<uint32_t>(u))
            : r.SetUInt32(m, &f, static_cast<uint32_t>(u));
      } else {
        rep ? r.AddUInt64(m, &f, u) : r.SetUInt64(m, &f, u);
      }
      return true;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double d = 0;
      if (!read_floating(v, &d)) return bad("a number");
      if (f.cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        rep ? r.AddDouble(m, &f, d) : r.SetDouble(m, &f, d);
      } else {
        rep ? r.AddFloat(m, &f, static_cast<float>(d)) : r.SetFloat(m, &f, static_cast<float>(d));
      }
      return true;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool b = false;
      if (v.get_bool().get(b) != simdjson::SUCCESS) return bad("true or false");
      rep ? r.AddBool(m, &f, b) : r.SetBool(m, &f, b);
      return true;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      int number = 0;
      std::string_view text;
      int64_t i = 0;
      if (v.get_string().get(text) == simdjson::SUCCESS) {
        const EnumValueDescriptor *e = enum_value_of(*f.enum_type(), text);
        if (e == nullptr) return bad("one of the enum's words");
        number = e->number();
      } else if (v.get_int64().get(i) == simdjson::SUCCESS &&
                 f.enum_type()->FindValueByNumber(static_cast<int>(i)) != nullptr) {
        number = static_cast<int>(i);
      } else {
        return bad("one of the enum's words");
      }
      rep ? r.AddEnumValue(m, &f, number) : r.SetEnumValue(m, &f, number);
      return true;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s;
      std::string_view text;
      if (f.type() == FieldDescriptor::TYPE_BYTES) {
        return fail(error, f.name() + ": bytes fields are not read from JSON");
      }
      if (v.get_string().get(text) == simdjson::SUCCESS) {
        s.assign(text);
      } else if (v.is_int64() || v.is_uint64()) {
        // An integer where the schema has a string (update_data's values): its text.
        s = simdjson::to_string(v);
      } else {
        return bad("a string");
      }
      rep ? r.AddString(m, &f, std::move(s)) : r.SetString(m, &f, std::move(s));
      return true;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      simdjson::dom::object obj;
      if (v.get_object().get(obj) != simdjson::SUCCESS) return bad("an object");
      return read_message(obj, rep ? r.AddMessage(m, &f) : r.MutableMessage(m, &f), error);
    }
  }
  return false;
}

// A JSON object key into a map entry's key field.
bool read_map_key(std::string_view key, Message *entry, std::string *error) {
  const FieldDescriptor &k = *entry->GetDescriptor()->map_key();
  const Reflection &r = *entry->GetReflection();
  auto number = [&](auto *n) {
    auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), *n);
    return ec == std::errc() && end == key.data() + key.size() && !key.empty();
  };
  int64_t i = 0;
  uint64_t u = 0;
  switch (k.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      r.SetString(entry, &k, std::string(key));
      return true;
    case FieldDescriptor::CPPTYPE_BOOL:
      if (key != "true" && key != "false") break;
      r.SetBool(entry, &k, key == "true");
      return true;
    case FieldDescriptor::CPPTYPE_INT32:
      if (!number(&i) || i < INT32_MIN || i > INT32_MAX) break;
      r.SetInt32(entry, &k, static_cast<int32_t>(i));
      return true;
    case FieldDescriptor::CPPTYPE_INT64:
      if (!number(&i)) break;
      r.SetInt64(entry, &k, i);
      return true;
    case FieldDescriptor::CPPTYPE_UINT32:
      if (!number(&u) || u > UINT32_MAX) break;
      r.SetUInt32(entry, &k, static_cast<uint32_t>(u));
      return true;
    case FieldDescriptor::CPPTYPE_UINT64:
      if (!number(&u)) break;
      r.SetUInt64(entry, &k, u);
      return true;
    default:
      break;
  }
  return fail(error, "bad map key '" + std::string(key) + "'");
}

const FieldDescriptor *field_named(const Descriptor &d, std::string_view key) {
  if (const FieldDescriptor *f = d.FindFieldByName(std::string(key))) return f;
  for (int i = 0; i < d.field_count(); ++i) {
    if (d.field(i)->json_name() == key) return d.field(i);  // lowerCamel, as protobuf accepts
  }
  return nullptr;
}

bool read_message(simdjson::dom::object obj, Message *m, std::string *error) {
  const Descriptor &d = *m->GetDescriptor();
  for (auto member : obj) {
    const FieldDescriptor *f = field_named(d, member.key);
    if (f == nullptr) return fail(error, "unknown member '" + std::string(member.key) + "'");
    if (member.value.is_null()) continue;  // null: the default, as in protobuf's mapping
    if (f->is_map()) {
      simdjson::dom::object entries;
      if (member.value.get_object().get(entries) != simdjson::SUCCESS) {
        return fail(error, f->name() + " must be an object");
      }
      const FieldDescriptor &value = *f->message_type()->map_value();
      for (auto e : entries) {
        Message *entry = m->GetReflection()->AddMessage(m, f);
        if (!read_map_key(e.key, entry, error)) return false;
        if (!read_value(e.value, entry, value, error)) return false;
      }
    } else if (f->is_repeated()) {
      simdjson::dom::array items;
      if (member.value.get_array().get(items) != simdjson::SUCCESS) {
        return fail(error, f->name() + " must be an array");
      }
      for (simdjson::dom::element item : items) {
        if (!read_value(item, m, *f, error)) return false;
      }
    } else if (!read_value(member.value, m, *f, error)) {
      return false;
    }
  }
  return true;
}

// "Kind" -> "KIND_", "PresenceStatus" -> "PRESENCE_STATUS_": the prefix of proto3's enum
// value naming convention.
std::string enum_prefix(const EnumDescriptor &type) {
  std::string p;
  for (char c : type.name()) {
    if (c >= 'A' && c <= 'Z' && !p.empty()) p += '_';
    p += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  return p + '_';
}

}  // namespace

std::string enum_word(const EnumValueDescriptor &v) {
  std::string_view name = v.name();
  const std::string prefix = enum_prefix(*v.type());
  if (name.starts_with(prefix) && name.size() > prefix.size()) name.remove_prefix(prefix.size());
  std::string word(name);
  for (char &c : word) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return word;
}

const EnumValueDescriptor *enum_value_of(const EnumDescriptor &type, std::string_view text) {
  for (int i = 0; i < type.value_count(); ++i) {
    const EnumValueDescriptor *v = type.value(i);
    if (v->name() == text || enum_word(*v) == text) return v;
  }
  return nullptr;
}

void append_json_string(std::string &out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = simdjson::validate_utf8(s.data(), s.size());
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else if (c >= 0x80 && !utf8) {
          out += "\\ufffd";  // invalid UTF-8 has no JSON form: each byte is replaced
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string payload_to_json(const Message &m) {
  std::string out;
  append_message(out, m, false);
  return out;
}

std::string to_json(const Message &m) {
  std::string out;
  append_message(out, m, true);
  return out;
}

std::unique_ptr<Message> parse_typed_body(BodyKind kind, std::string_view bytes) {
  const TypedBody *t = typed_body(kind);
  if (t == nullptr) return nullptr;
  std::unique_ptr<Message> m(t->prototype->New());
  if (!m->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return nullptr;
  return m;
}

bool json_to_message(std::string_view json, Message *m, std::string *error) {
  thread_local simdjson::dom::parser parser;
  m->Clear();
  simdjson::dom::element root;
  if (parser.parse(json.data(), json.size(), true).get(root) != simdjson::SUCCESS) {
    return fail(error, "not valid JSON");
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return fail(error, "not a JSON object");
  return read_message(obj, m, error);
}

bool json_to_typed(std::string_view event, std::string_view json, BodyKind *kind,
                   std::string *bytes) {
  const TypedBody *t = typed_body_of_event(event);
  if (t == nullptr) return false;
  std::unique_ptr<Message> m(t->prototype->New());
  if (!json_to_message(json, m.get()) || !m->SerializeToString(bytes)) return false;
  *kind = t->kind;
  return true;
}

std::optional<std::string> insert_seq(std::string_view object_json, uint64_t seq) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  std::size_t i = 0;
  while (i < object_json.size() && space(object_json[i])) ++i;
  if (i == object_json.size() || object_json[i] != '{') return std::nullopt;
  const std::string_view members = object_json.substr(i + 1);  // everything after '{'
  std::size_t j = 0;
  while (j < members.size() && space(members[j])) ++j;
  const bool empty = j < members.size() && members[j] == '}';
  char digits[20];  // 2^64-1 has 20 digits
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, seq);
  (void)ec;  // 20 digits always fit
  std::string out;
  out.reserve(8 + sizeof digits + members.size());
  out += R"({"seq":)";
  out.append(digits, static_cast<std::size_t>(end - digits));
  if (!empty) out += ',';
  out += members;
  return out;
}

std::optional<std::string> client_payload(BodyKind kind, std::string_view body, uint64_t seq,
                                          std::vector<std::string> *target_users) {
  if (kind == BodyKind::kJson) return insert_seq(body, seq);
  auto message = parse_typed_body(kind, body);
  if (!message) return std::nullopt;
  if (target_users != nullptr) {
    if (auto *u = dynamic_cast<const kronop::v1::ReelUpdate *>(message.get())) {
      target_users->assign(u->target_users().begin(), u->target_users().end());
    }
  }
  return insert_seq(payload_to_json(*message), seq);
}

void load_schema() {
  // One message of each file of proto/kronop/v1 (a file's descriptors are built together).
  (void)kronop::v1::ApiErrorBody::descriptor();
  (void)kronop::v1::ControlRequest::descriptor();
  (void)kronop::v1::Envelope::descriptor();
  (void)kronop::v1::PresenceUpdate::descriptor();
  (void)kronop::v1::ReelUpdate::descriptor();
  (void)typed_bodies();
}

}  // namespace kronop
