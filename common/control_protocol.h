// The control socket's framing, shared by kronopd (control.h) and its clients (kronopctl,
// the benchmarks): each message is a 4-byte little-endian length and a serialized
// kronop.v1.ControlRequest or ControlResponse (proto/kronop/v1/control.proto).
#pragma once

#include <cstddef>

namespace kronop {

// The largest message either side accepts; a longer length prefix closes the connection.
// Lists in responses stop short of it (with their full count beside them).
inline constexpr std::size_t kMaxControlMessage = 1 << 20;

// The largest request kronopd reads. The largest legitimate one is under 150 bytes (a
// request carries at most one id or topic, and ids are at most 128 characters); the rest is
// room for fields added later. A longer length prefix is answered with an error and the
// connection closed, before any of its body is read: a client cannot make kronopd hold
// (or wait for) a megabyte per connection.
inline constexpr std::size_t kMaxControlRequest = 4096;

}  // namespace kronop
