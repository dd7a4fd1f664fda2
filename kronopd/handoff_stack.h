// HandoffStack: how one thread hands batches to another without a lock (the ingest thread's
// message batches to each I/O loop, the loops' interest reports to the ingest thread).
//
// Producers push single nodes with a CAS; the one consumer takes the whole stack at once
// (an exchange) and reverses it into push order. There is no ABA problem because a node is
// never popped singly. The stack owns the nodes pushed and not yet taken.
#pragma once

#include <atomic>

namespace kronop::daemon {

// A lock-free stack of nodes with one consumer that takes them all at once (in the order
// they were pushed). Producers push with a CAS; the consumer swaps the head out. No ABA: a
// node is never popped singly.
template <typename Node>
class HandoffStack {
 public:
  HandoffStack() = default;
  ~HandoffStack() { delete_list(take_all()); }
  HandoffStack(const HandoffStack &) = delete;
  HandoffStack &operator=(const HandoffStack &) = delete;

  // Returns true when the stack was empty (the consumer may need a wake-up).
  bool push(Node *n) {
    Node *head = head_.load(std::memory_order_relaxed);
    do {
      n->next = head;
    } while (!head_.compare_exchange_weak(head, n, std::memory_order_release,
                                          std::memory_order_relaxed));
    return head == nullptr;
  }
  bool empty() const { return head_.load(std::memory_order_relaxed) == nullptr; }
  // Everything pushed so far, oldest first, as a list linked through `next`.
  Node *take_all() {
    Node *n = head_.exchange(nullptr, std::memory_order_acquire);
    Node *reversed = nullptr;
    while (n != nullptr) {
      Node *next = n->next;
      n->next = reversed;
      reversed = n;
      n = next;
    }
    return reversed;
  }
  static void delete_list(Node *n) {
    while (n != nullptr) {
      Node *next = n->next;
      delete n;
      n = next;
    }
  }

 private:
  std::atomic<Node *> head_{nullptr};
};

}  // namespace kronop::daemon
