// Corking and backpressure: how frames reach a connection's socket.
//
// send() only queues a frame (a SharedFrame: the same bytes for every subscriber); once per
// loop turn flush_all() writes each connection's queued frames in one go, uv_try_write first
// and uv_write for what the kernel did not take (uWebSockets' corking). It runs from a check
// handle (after the turn's I/O callbacks) and a prepare handle (before the loop blocks, for
// what timers queued).
//
// Backpressure has a hard cap, --max-unsent-bytes, over what is queued here and in libuv:
// over it a low-priority (droppable) frame is dropped, queued droppable frames make room,
// and when that is not enough the connection is closed with 1013 (a slow consumer). The
// close frame itself is always queued.
//
// Invariants: a connection is in dirty_ exactly while its `dirty` flag is set; a uv_write's
// frames are owned by its request (released into req->data, re-owned in the callback).
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

#include "fanout.h"

namespace kronop::daemon {

class ClientServer;
struct Connection;

// How a frame is queued on a connection that has too much unsent.
enum class Send : uint8_t {
  kNormal,     // over the bound: the connection is closed (1013)
  kDroppable,  // a low-priority message: over the bound it is dropped (counted)
  kClosing,    // the close frame: always queued
};

class WriteQueue {
 public:
  explicit WriteQueue(ClientServer &server) : server_(server) {}
  WriteQueue(const WriteQueue &) = delete;
  WriteQueue &operator=(const WriteQueue &) = delete;

  void start(uv_loop_t *loop);
  // Closes the check and prepare handles (the loop can end).
  void stop();

  // Queues a frame; it goes out when the loop flushes.
  void send(Connection *c, SharedFrame frame, Send how = Send::kNormal);
  // Writes a connection's queued frames now (see the top of the file).
  void flush(Connection *c);
  void flush_all();
  void mark_dirty(Connection *c);
  // The connection is going away: drops it from the dirty list.
  void forget(Connection *c);

 private:
  ClientServer &server_;
  uv_check_t check_{};
  uv_prepare_t prepare_{};
  std::vector<Connection *> dirty_;  // connections with queued frames
  std::vector<Connection *> flushing_;
  std::vector<uv_buf_t> bufs_;  // scratch for flush
};

}  // namespace kronop::daemon
