// Fuzz target for the control socket's framing and request decoding, as kronopd reads a
// connection (kronopd/control.h, next_control_request: the function ControlServer's
// serve loop calls). The first byte chooses where the rest (the bytes a peer sends) is cut
// in two reads; every read's bytes are appended and consumed request by request, as the
// daemon does. Checks: a frame never takes more than was received nor more than the
// request limit allows; a prefix over the limit is refused whatever follows; a decoded
// request serializes and parses back to itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "control.h"
#include "fuzz_check.h"
#include "kronop/v1/control.pb.h"
#include "log.h"

// Protobuf's complaints (invalid UTF-8 in a string field) go where kronopd sends them: to
// its log, at debug level, so a peer cannot flood the log with them.
extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  kronop::log::route_protobuf_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using kronop::daemon::ControlFrame;
  if (size < 1) return 0;
  std::string_view input(reinterpret_cast<const char *>(data) + 1, size - 1);
  const std::size_t split = input.empty() ? 0 : data[0] % input.size();
  std::string in;  // Client::in
  for (std::string_view chunk : {input.substr(0, split), input.substr(split)}) {
    in.append(chunk);
    for (;;) {
      kronop::v1::ControlRequest request;
      const ControlFrame f = kronop::daemon::next_control_request(in, request);
      uint32_t prefix = 0;
      if (in.size() >= 4) std::memcpy(&prefix, in.data(), 4);
      if (f.kind == ControlFrame::Kind::kNeedMore) {
        FUZZ_CHECK(f.used == 0);
        FUZZ_CHECK(in.size() < 4 ||
                   (prefix <= kronop::kMaxControlRequest && in.size() < 4 + std::size_t{prefix}));
        break;
      }
      FUZZ_CHECK(in.size() >= 4 && f.length == prefix);
      if (f.kind == ControlFrame::Kind::kTooLarge) {
        FUZZ_CHECK(prefix > kronop::kMaxControlRequest);
        return 0;  // the daemon answers an error and closes the connection
      }
      FUZZ_CHECK(f.used == 4 + std::size_t{prefix});
      FUZZ_CHECK(f.used <= in.size() && f.used <= 4 + kronop::kMaxControlRequest);
      if (f.kind == ControlFrame::Kind::kRequest) {
        const std::string again = request.SerializeAsString();
        kronop::v1::ControlRequest back;
        FUZZ_CHECK(back.ParseFromString(again));
        FUZZ_CHECK(back.SerializeAsString() == again);
        FUZZ_CHECK(back.command_case() == request.command_case());
      }
      in.erase(0, f.used);
    }
  }
  return 0;
}
