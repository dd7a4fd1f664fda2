// See proto_json.h.
#include "proto_json.h"

#include <google/protobuf/util/json_util.h>

namespace kronop::daemon {

std::string proto_to_json(const google::protobuf::Message &m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

}  // namespace kronop::daemon
