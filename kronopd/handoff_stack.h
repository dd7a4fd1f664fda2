// HandoffStack: how one thread hands batches to another without a lock (the ingest thread's
// message batches to each I/O loop, the loops' interest reports to the ingest thread).
//
// Producers push single nodes with a CAS; the one consumer takes the whole stack at once
// (an exchange) and reverses it into push order. There is no ABA problem because a node is
// never popped singly. The stack owns the nodes pushed and not yet taken.
#pragma once

#include <atomic>
#include <memory>
#include <utility>

namespace kronop::daemon {

// A lock-free stack of nodes with one consumer that takes them all at once (in the order
// they were pushed). Producers push with a CAS; the consumer swaps the head out. No ABA: a
// node is never popped singly. Nodes are owned by whoever holds them: the pusher's
// unique_ptr, then the stack, then the List take_all() returns.
template <typename Node>
class HandoffStack {
 public:
  // Nodes taken from the stack, oldest first, linked through `next`; deletes them.
  class List {
   public:
    explicit List(Node *head = nullptr) : head_(head) {}
    List(List &&o) noexcept : head_(std::exchange(o.head_, nullptr)) {}
    List &operator=(List &&o) noexcept {
      std::swap(head_, o.head_);
      return *this;
    }
    ~List() {
      while (head_ != nullptr) std::unique_ptr<Node> n(std::exchange(head_, head_->next));
    }
    Node *head() const { return head_; }

   private:
    Node *head_;
  };

  HandoffStack() = default;
  ~HandoffStack() { take_all(); }
  HandoffStack(const HandoffStack &) = delete;
  HandoffStack &operator=(const HandoffStack &) = delete;

  // Returns true when the stack was empty (the consumer may need a wake-up).
  bool push(std::unique_ptr<Node> node) {
    Node *n = node.release();
    Node *head = head_.load(std::memory_order_relaxed);
    do {
      n->next = head;
      // release: the node's contents happen before the consumer's acquire in take_all().
    } while (!head_.compare_exchange_weak(head, n, std::memory_order_release,
                                          std::memory_order_relaxed));
    return head == nullptr;
  }
  bool empty() const { return head_.load(std::memory_order_relaxed) == nullptr; }
  // Everything pushed so far, oldest first.
  List take_all() {
    Node *n = head_.exchange(nullptr, std::memory_order_acquire);
    Node *reversed = nullptr;
    while (n != nullptr) {
      Node *next = n->next;
      n->next = reversed;
      reversed = n;
      n = next;
    }
    return List(reversed);
  }

 private:
  std::atomic<Node *> head_{nullptr};
};

}  // namespace kronop::daemon
