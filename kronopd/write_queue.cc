// Corking and backpressure; see write_queue.h.
#include "write_queue.h"

#include <algorithm>
#include <memory>

#include "connection.h"
#include "server.h"
#include "websocket.h"

namespace kronop::daemon {
namespace {
// A uv_write of frames that uv_try_write could not finish: owns them until written.
struct WriteRequest {
  uv_write_t req{};
  std::vector<SharedFrame> frames;
};

void on_written(uv_write_t *req, int status) {
  std::unique_ptr<WriteRequest> done(static_cast<WriteRequest *>(req->data));
  auto *conn = static_cast<Connection *>(req->handle->data);
  --conn->writes_in_flight;
  if (status < 0) {
    conn->closing = true;
    conn->close_handle();
  } else if (conn->closing && conn->writes_in_flight == 0 && conn->out.empty()) {
    conn->half_close();
  } else if (!conn->joining.empty()) {
    conn->server->joins().resume_history(conn);
  }
}
}  // namespace

void WriteQueue::start(uv_loop_t *loop) {
  uv_check_init(loop, &check_);
  uv_prepare_init(loop, &prepare_);
  check_.data = this;
  prepare_.data = this;
  uv_check_start(&check_, [](uv_check_t *h) { static_cast<WriteQueue *>(h->data)->flush_all(); });
  uv_prepare_start(&prepare_,
                   [](uv_prepare_t *h) { static_cast<WriteQueue *>(h->data)->flush_all(); });
  // They only serve the connections; they must not keep the loop alive by themselves.
  uv_unref(reinterpret_cast<uv_handle_t *>(&check_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&prepare_));
}

void WriteQueue::stop() {
  uv_close(reinterpret_cast<uv_handle_t *>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&prepare_), nullptr);
}

void WriteQueue::mark_dirty(Connection *c) {
  if (c->dirty || c->handle_closed) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void WriteQueue::forget(Connection *c) {
  if (c->dirty) std::erase(dirty_, c);
}

void WriteQueue::send(Connection *c, SharedFrame frame, Send how) {
  if (c->handle_closed || c->shutdown_sent) return;
  const std::size_t max_unsent = server_.options().max_unsent_bytes;
  auto unsent = [&] { return c->out_bytes + c->tcp.write_queue_size + frame->size(); };
  if (how != Send::kClosing && unsent() > max_unsent && c->out_bytes > 0) {
    // A burst within one loop turn: give the kernel what it takes before judging the client
    // by what is left.
    flush(c);
    if (c->handle_closed || c->shutdown_sent) return;
  }
  if (how != Send::kClosing && unsent() > max_unsent) {
    if (how == Send::kDroppable) {
      server_.bump(Counter::kDroppedLow);
      return;
    }
    // Make room by dropping the low-priority frames still queued here; what libuv already
    // holds is past recall.
    std::size_t dropped = 0;
    std::erase_if(c->out, [&](const Connection::Outgoing &o) {
      if (!o.droppable) return false;
      c->out_bytes -= o.frame->size();
      ++dropped;
      return true;
    });
    server_.bump(Counter::kDroppedLow, dropped);
    if (unsent() > max_unsent) {
      // The client does not keep up, and this message may not be lost silently: close.
      server_.bump(Counter::kClosedSlow);
      server_.log_fault(c, Fault::kSlow, ws::kCloseTryAgainLater,
                        "slow consumer: too much unread data");
      c->out.clear();
      c->out_bytes = 0;
      c->close_with(ws::kCloseTryAgainLater, "slow consumer: too much unread data");
      return;
    }
  }
  c->out_bytes += frame->size();
  c->out.push_back({std::move(frame), how == Send::kDroppable});
  mark_dirty(c);
}

void WriteQueue::flush(Connection *c) {
  if (c->handle_closed) {
    c->out.clear();
    c->out_bytes = 0;
    return;
  }
  const std::size_t n = c->out.size();
  if (n > 0 && !c->shutdown_sent) {
    bufs_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string &f = *c->out[i].frame;
      bufs_[i] = uv_buf_init(const_cast<char *>(f.data()), static_cast<unsigned>(f.size()));
    }
    server_.bump(Counter::kFramesOut, n);
    server_.bump(Counter::kBytesOut, c->out_bytes);
    std::size_t first = 0;
    bool failed = false;
    if (c->tcp.write_queue_size == 0) {
      // Straight into the socket while the kernel has room: no request, no copy.
      server_.bump(Counter::kWrites);
      int written = uv_try_write(c->stream(), bufs_.data(), static_cast<unsigned>(n));
      if (written > 0) {
        auto left = static_cast<std::size_t>(written);
        while (first < n && left >= bufs_[first].len) left -= bufs_[first++].len;
        if (first < n && left > 0) {
          bufs_[first].base += left;
          bufs_[first].len -= left;
        }
      } else if (written != UV_EAGAIN) {
        failed = true;
      }
    }
    if (!failed && first < n) {
      auto w = std::make_unique<WriteRequest>();
      w->req.data = w.get();
      w->frames.reserve(n - first);
      for (std::size_t i = first; i < n; ++i) w->frames.push_back(std::move(c->out[i].frame));
      server_.bump(Counter::kWrites);
      ++c->writes_in_flight;
      if (uv_write(&w->req, c->stream(), &bufs_[first], static_cast<unsigned>(n - first),
                   on_written) == 0) {
        (void)w.release();  // libuv's until on_written
      } else {
        --c->writes_in_flight;
        failed = true;
      }
    }
    c->out.clear();
    c->out_bytes = 0;
    if (c->out.capacity() > 64) c->out.shrink_to_fit();
    if (failed) {  // the peer is gone: nothing more can be said to it
      c->closing = true;
      c->close_handle();
      return;
    }
  }
  if (c->closing && c->writes_in_flight == 0) c->half_close();
}

void WriteQueue::flush_all() {
  while (!dirty_.empty()) {
    flushing_.swap(dirty_);
    // A connection is in dirty_ exactly while its flag is set (forget() relies on it), even
    // after send() flushed it early.
    for (Connection *c : flushing_) {
      c->dirty = false;
      flush(c);
    }
    flushing_.clear();
  }
}

}  // namespace kronop::daemon
