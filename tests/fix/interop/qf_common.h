// Shared helpers for the QuickFIX interoperability programs (tests/fix/interop/*.cpp and
// tests/e2e/interop/*.cpp, compiled by qfharness.build with g++ against Debian's
// libquickfix-dev 1.15).
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
#include <ctime>
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

// SendingTime/TransactTime format: YYYYMMDD-HH:MM:SS.sss in UTC.
inline std::string utc_now_millis() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t secs = system_clock::to_time_t(now);
  int millis = int(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm_utc;
  gmtime_r(&secs, &tm_utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H:%M:%S", &tm_utc);
  char out[40];
  std::snprintf(out, sizeof out, "%s.%03d", buf, millis);
  return out;
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

// An Application that prints every message QuickFIX sends (SENT) or accepts (RECV), then
// hands it to on_sent / on_received (application = false for session-level messages).
// on_received may throw what fromApp/fromAdmin may (e.g. FIX::UnsupportedMessageType).
class EchoingApp : public FIX::Application {
 public:
  void toAdmin(FIX::Message& m, const FIX::SessionID& id) override {
    emit("SENT " + bar_separated(m));
    on_sent(m, id);
  }
  void toApp(FIX::Message& m, const FIX::SessionID& id) throw(FIX::DoNotSend) override {
    emit("SENT " + bar_separated(m));
    on_sent(m, id);
  }
  void fromAdmin(const FIX::Message& m, const FIX::SessionID& id)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::RejectLogon) override {
    emit("RECV " + bar_separated(m));
    on_received(m, id, false);
  }
  void fromApp(const FIX::Message& m, const FIX::SessionID& id)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::UnsupportedMessageType) override {
    emit("RECV " + bar_separated(m));
    on_received(m, id, true);
  }

 protected:
  virtual void on_sent(const FIX::Message&, const FIX::SessionID&) {}
  virtual void on_received(const FIX::Message&, const FIX::SessionID&, bool /*application*/) {}
};

// The session-state half of an initiator's Application: LOGON/LOGOUT lines, and flags the
// main thread waits on through `waiter`. Subclasses add what they count in on_sent/on_received.
class InitiatorApp : public EchoingApp {
 public:
  Waiter waiter;
  bool logged_on = false;
  bool logged_out = false;
  FIX::SessionID session_id;

  void onCreate(const FIX::SessionID&) override {}
  void onLogon(const FIX::SessionID& id) override {
    emit("LOGON " + id.toString());
    waiter.update([&] { logged_on = true; session_id = id; });
  }
  void onLogout(const FIX::SessionID& id) override {
    emit("LOGOUT " + id.toString());
    waiter.update([&] { logged_out = true; });
  }
};

}  // namespace interop
