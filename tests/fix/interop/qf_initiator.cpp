// A real QuickFIX initiator for the interoperability test.
//
//   qf_initiator --config FILE [--orders N] [--heartbeats K] [--sent-heartbeats H]
//                [--timeout S] [--symbol SYM]
//
// Logs on with the session in FILE (one [SESSION]; UseDataDictionary=N because
// Debian's package ships no spec XMLs), sends N NewOrderSingles (ClOrdID QF-1..QF-N),
// waits until every one of them is answered by an application message carrying its
// ClOrdID (an echo or an ExecutionReport), waits for K Heartbeats from the peer
// and until it has sent H Heartbeats itself (so the peer has seen QuickFIX's timer
// at work before the Logout, whatever the phase of the two timers), then logs out and waits for the peer's Logout. Exit 0 only if all of that happened
// and no Reject (35=3) or BusinessMessageReject (35=j) arrived.
#include "qf_common.h"

#include <quickfix/FileLog.h>
#include <quickfix/MessageStore.h>
#include <quickfix/SocketInitiator.h>

#include <map>
#include <set>
#include <sstream>

namespace {

class OrderSender : public interop::InitiatorApp {
 public:
  std::set<std::string> answered;           // ClOrdIDs that got an application answer
  std::map<std::string, int> received;      // MsgType -> count
  std::map<std::string, int> sent;          // MsgType -> count

 private:
  void on_sent(const FIX::Message& m, const FIX::SessionID&) override {
    waiter.update([&] { sent[interop::msg_type(m)]++; });
  }
  void on_received(const FIX::Message& m, const FIX::SessionID&, bool application) override {
    std::string clordid = interop::field_or(m, 11, "");
    waiter.update([&] {
      received[interop::msg_type(m)]++;
      if (application && !clordid.empty()) answered.insert(clordid);
    });
  }
};

int count_of(const std::map<std::string, int>& by_type, const std::string& type) {
  auto it = by_type.find(type);
  return it == by_type.end() ? 0 : it->second;
}

std::string counts(const std::map<std::string, int>& by_type) {
  std::ostringstream out;
  bool first = true;
  for (const auto& kv : by_type) {
    out << (first ? "" : ",") << kv.first << ":" << kv.second;
    first = false;
  }
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  int orders = 3, heartbeats = 1, sent_heartbeats = 0;
  double timeout = 20;
  std::string symbol = "IBM";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    if (key == "--config") config = value;
    else if (key == "--orders") orders = std::stoi(value);
    else if (key == "--heartbeats") heartbeats = std::stoi(value);
    else if (key == "--sent-heartbeats") sent_heartbeats = std::stoi(value);
    else if (key == "--timeout") timeout = std::stod(value);
    else if (key == "--symbol") symbol = value;
    else { std::cerr << "unknown option " << key << std::endl; return 2; }
  }
  if (config.empty()) { std::cerr << "--config is required" << std::endl; return 2; }

  try {
    FIX::SessionSettings settings(config);
    OrderSender app;
    FIX::MemoryStoreFactory store;
    FIX::FileLogFactory log(settings);
    FIX::SocketInitiator initiator(app, store, settings, log);
    initiator.start();

    auto fail = [&](const std::string& why) {
      std::string detail;
      {
        std::lock_guard<std::mutex> lock(app.waiter.mutex());
        detail = " sent=" + counts(app.sent) + " received=" + counts(app.received);
      }
      interop::emit("RESULT fail " + why + detail);
      initiator.stop(true);
      return 1;
    };

    if (!app.waiter.wait_for(timeout, [&] { return app.logged_on; })) return fail("no_logon");

    for (int n = 1; n <= orders; ++n) {
      FIX::Message order;
      order.getHeader().setField(FIX::MsgType("D"));
      order.setField(11, "QF-" + std::to_string(n));    // ClOrdID
      order.setField(21, "1");                          // HandlInst: automated, private
      order.setField(38, std::to_string(100 * n));      // OrderQty
      order.setField(40, "2");                          // OrdType: limit
      order.setField(44, std::to_string(10 + n) + ".25");  // Price
      order.setField(54, n % 2 ? "1" : "2");            // Side: buy / sell
      order.setField(55, symbol);                       // Symbol
      order.setField(60, interop::utc_now_millis());             // TransactTime
      if (!FIX::Session::sendToTarget(order, app.session_id)) return fail("send_failed");
    }

    if (!app.waiter.wait_for(timeout, [&] { return int(app.answered.size()) >= orders; }))
      return fail("orders_not_answered");
    if (!app.waiter.wait_for(timeout, [&] { return count_of(app.received, "0") >= heartbeats; }))
      return fail("no_heartbeats");
    if (!app.waiter.wait_for(timeout, [&] { return count_of(app.sent, "0") >= sent_heartbeats; }))
      return fail("no_heartbeat_sent");

    FIX::Session* session = FIX::Session::lookupSession(app.session_id);
    int next_sender_before_logout = session->getExpectedSenderNum();
    session->logout("interop test done");
    if (!app.waiter.wait_for(timeout, [&] { return app.logged_out; })) return fail("no_logout");

    std::ostringstream result;
    bool ok;
    {
      std::lock_guard<std::mutex> lock(app.waiter.mutex());
      int rejects = count_of(app.received, "3") + count_of(app.received, "j");
      ok = rejects == 0 && count_of(app.received, "5") >= 1;
      result << (ok ? "ok" : "fail")
             << " next_sender_before_logout=" << next_sender_before_logout
             << " next_sender=" << session->getExpectedSenderNum()
             << " next_target=" << session->getExpectedTargetNum()
             << " answered=" << app.answered.size()
             << " sent=" << counts(app.sent) << " received=" << counts(app.received);
    }
    interop::emit("RESULT " + result.str());
    initiator.stop();
    return ok ? 0 : 1;
  } catch (std::exception& e) {
    interop::emit(std::string("RESULT fail exception ") + e.what());
    return 1;
  }
}
