// The control socket's framing, shared by kronopd (control.h) and its clients (kronopctl,
// the benchmarks): each message is a 4-byte little-endian length and a serialized
// kronop.v1.ControlRequest or ControlResponse (proto/kronop/v1/control.proto).
#pragma once

#include <cstddef>

namespace kronop {

// The largest message either side accepts; a longer length prefix closes the connection.
// Lists in responses stop short of it (with their full count beside them).
inline constexpr std::size_t kMaxControlMessage = 1 << 20;

}  // namespace kronop
