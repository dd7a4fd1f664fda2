// The body-kind table, read from Envelope's oneof descriptor; see body_kind.h.
#include "body_kind.h"

#include <cctype>
#include <vector>

#include "kronop/v1/envelope.pb.h"

namespace kronop {
namespace {

// "PresenceUpdate" -> "presence_update".
std::string snake_case(std::string_view type_name) {
  std::string out;
  for (char c : type_name) {
    if (std::isupper(static_cast<unsigned char>(c))) {
      if (!out.empty()) out += '_';
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out;
}

const std::vector<TypedBody> &table() {
  static const std::vector<TypedBody> kTable = [] {
    std::vector<TypedBody> t;
    const auto *oneof = kronop::v1::Envelope::descriptor()->FindOneofByName("body");
    auto *factory = google::protobuf::MessageFactory::generated_factory();
    for (int i = 0; i < oneof->field_count(); ++i) {
      const google::protobuf::FieldDescriptor *f = oneof->field(i);
      if (f->message_type() == nullptr) continue;  // the JSON body (bytes)
      t.push_back({static_cast<BodyKind>(f->number()), snake_case(f->message_type()->name()),
                   factory->GetPrototype(f->message_type()), f});
    }
    return t;
  }();
  return kTable;
}

}  // namespace

std::span<const TypedBody> typed_bodies() { return table(); }

const TypedBody *typed_body(BodyKind kind) {
  for (const TypedBody &b : table()) {
    if (b.kind == kind) return &b;
  }
  return nullptr;
}

const TypedBody *typed_body_of_event(std::string_view event) {
  for (const TypedBody &b : table()) {
    if (b.event == event) return &b;
  }
  return nullptr;
}

}  // namespace kronop
