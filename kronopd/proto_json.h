// Protobuf messages as JSON the way Kronop prints them to operators (kronopctl --json, the
// /api/v1/system endpoints, REST responses) and to clients (the drain's system_notice): the
// common payload codec's operator JSON, every field included, counts as numbers, enums as
// lower-case words. The rules are stated once, in common/payload_codec.h.
#pragma once

#include <google/protobuf/message.h>

#include <string>

#include "payload_codec.h"

namespace kronop::daemon {

inline std::string proto_to_json(const google::protobuf::Message &m) { return to_json(m); }

}  // namespace kronop::daemon
