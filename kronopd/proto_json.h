// Protobuf messages as JSON the way Kronop prints them to operators (kronopctl --json, the
// /api/v1/system endpoints): proto field names, every field included, 64-bit integers as
// strings (protobuf's JSON mapping).
#pragma once

#include <google/protobuf/message.h>

#include <string>

namespace kronop::daemon {

std::string proto_to_json(const google::protobuf::Message &m);

}  // namespace kronop::daemon
