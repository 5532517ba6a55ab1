// Shared helpers for the QuickFIX interoperability programs (compiled by
// tests/fix/test_quickfix_interop.py with g++ against Debian's libquickfix-dev 1.15).
//
// Both programs talk to the test through stdout, one line per event, so the
// Python side can check what QuickFIX saw without parsing QuickFIX's own logs:
//   SENT <fix with | separators>     a message QuickFIX is about to send
//   RECV <fix with | separators>     a message QuickFIX accepted from the peer
//   LOGON / LOGOUT                   session state changes
//   RESULT ok|fail <details>         the initiator's verdict, printed last
#pragma once

#include <quickfix/Application.h>
#include <quickfix/Message.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

namespace interop {

inline std::mutex& out_mutex() {
  static std::mutex m;
  return m;
}

// One line per call, flushed: the test reads our stdout while we run.
inline void emit(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mutex());
  std::cout << line << std::endl;
}

inline std::string bar_separated(const FIX::Message& message) {
  std::string raw = message.toString();
  for (auto& c : raw)
    if (c == '\001') c = '|';
  return raw;
}

inline std::string msg_type(const FIX::Message& message) {
  FIX::MsgType type;
  if (message.getHeader().isSetField(type)) {
    message.getHeader().getField(type);
    return type.getValue();
  }
  return "";
}

inline std::string field_or(const FIX::FieldMap& map, int tag, const std::string& fallback) {
  return map.isSetField(tag) ? map.getField(tag) : fallback;
}

// A latch on a predicate, so the main thread can wait for QuickFIX's threads.
class Waiter {
 public:
  template <class Pred>
  bool wait_for(double seconds, Pred pred) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, std::chrono::duration<double>(seconds), pred);
  }
  template <class Fn>
  void update(Fn fn) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn();
    }
    cv_.notify_all();
  }
  std::mutex& mutex() { return mutex_; }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

}  // namespace interop
