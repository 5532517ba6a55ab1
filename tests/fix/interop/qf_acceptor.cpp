// A real QuickFIX acceptor with a tiny order-handling application, for the
// interoperability test of `crossbook client`.
//
//   qf_acceptor --config FILE [--duration S]
//
// Runs the acceptor sessions in FILE (UseDataDictionary=N) until stdin reaches EOF
// (the test closes the pipe) or S seconds have passed, then prints one
// "SUMMARY <session> next_sender=.. next_target=.." line per session and exits 0.
//
// The application, per session (FIX.4.2 wording when BeginString is FIX.4.2,
// FIX.4.4 wording otherwise):
//   NewOrderSingle       -> ExecutionReport New, then a fill of half the quantity at the
//                           limit price (all of it at 100 for a market order); symbol
//                           REJECT is refused with ExecType/OrdStatus Rejected.
//   OrderCancelRequest   -> ExecutionReport Canceled, or OrderCancelReject (unknown / closed).
//   CancelReplaceRequest -> ExecutionReport Replaced with the new quantity/price, or OrderCancelReject.
//   OrderStatusRequest   -> ExecutionReport with the order's state (ExecType I on 4.4,
//                           ExecTransType 3 on 4.2), OrdStatus Rejected if unknown.
//   OrderMassCancelRequest -> ExecutionReport Canceled per open order (of the symbol if 55
//                           is given), then OrderMassCancelReport with the count.
//   anything else        -> BusinessMessageReject (QuickFIX's UnsupportedMessageType).
#include "qf_common.h"

#include <quickfix/FileLog.h>
#include <quickfix/MessageStore.h>
#include <quickfix/SocketAcceptor.h>

#include <atomic>
#include <cmath>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace {

std::string decimal(double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", value);
  return buf;
}

struct Order {
  std::string clordid, orderid, symbol, side, ordtype, price;
  long qty = 0, cum = 0;
  double notional = 0;  // sum of LastQty * LastPx, for AvgPx
  bool done = false;    // filled, canceled or rejected
  long leaves() const { return done ? 0 : qty - cum; }
  std::string avgpx() const { return cum ? decimal(notional / cum) : "0"; }
};

class AcceptorApp : public interop::EchoingApp {
 public:
  std::set<FIX::SessionID> sessions;

  void onCreate(const FIX::SessionID& id) override { sessions.insert(id); }
  void onLogon(const FIX::SessionID& id) override { interop::emit("LOGON " + id.toString()); }
  void onLogout(const FIX::SessionID& id) override { interop::emit("LOGOUT " + id.toString()); }

 private:
  void on_received(const FIX::Message& m, const FIX::SessionID& id, bool application) override {
    if (!application) return;
    std::string type = interop::msg_type(m);
    // QuickFIX calls us from its socket thread; one lock keeps the order book simple.
    std::lock_guard<std::mutex> lock(mutex_);
    is42_ = id.getBeginString().getValue() == "FIX.4.2";
    if (type == "D") on_new_order(m, id);
    else if (type == "F") on_cancel(m, id);
    else if (type == "G") on_replace(m, id);
    else if (type == "H") on_status(m, id);
    else if (type == "q") on_mass_cancel(m, id);
    else throw FIX::UnsupportedMessageType();
  }

  std::mutex mutex_;
  bool is42_ = false;
  int next_order_ = 1, next_exec_ = 1;
  std::map<std::string, std::shared_ptr<Order>> by_clordid_;  // every ClOrdID of a chain
  std::vector<std::shared_ptr<Order>> orders_;

  std::string status_of(const Order& o) const {
    if (o.done && o.cum < o.qty && o.orderid.rfind("REJ", 0) == 0) return "8";
    if (o.done && o.cum < o.qty) return "4";
    if (o.cum >= o.qty) return "2";
    return o.cum ? "1" : "0";
  }

  void send_report(const FIX::SessionID& id, const Order& o, const std::string& exec_type,
                   const std::string& ord_status, long last_qty, const std::string& last_px,
                   const std::string& orig = "", const std::string& text = "",
                   const std::string& request_clordid = "", bool status_reply = false) {
    FIX::Message er;
    er.getHeader().setField(FIX::MsgType("8"));
    er.setField(6, o.avgpx());
    er.setField(11, request_clordid.empty() ? o.clordid : request_clordid);
    er.setField(14, std::to_string(o.cum));
    er.setField(17, "X" + std::to_string(next_exec_++));
    if (is42_) er.setField(20, status_reply ? "3" : "0");  // ExecTransType
    if (last_qty) {
      er.setField(32, std::to_string(last_qty));  // LastShares (4.2) / LastQty
      er.setField(31, last_px);
    }
    er.setField(37, o.orderid);
    er.setField(38, std::to_string(o.qty));
    er.setField(39, ord_status);
    if (!o.ordtype.empty()) er.setField(40, o.ordtype);
    if (!orig.empty()) er.setField(41, orig);
    if (!o.price.empty()) er.setField(44, o.price);
    er.setField(54, o.side);
    er.setField(55, o.symbol);
    if (!text.empty()) er.setField(58, text);
    er.setField(60, interop::utc_now_millis());
    er.setField(150, exec_type);
    er.setField(151, std::to_string(o.leaves()));
    FIX::Session::sendToTarget(er, id);
  }

  void send_cancel_reject(const FIX::SessionID& id, const FIX::Message& request,
                          const std::string& response_to, const std::shared_ptr<Order>& o,
                          const std::string& reason, const std::string& text) {
    FIX::Message rej;
    rej.getHeader().setField(FIX::MsgType("9"));
    rej.setField(11, interop::field_or(request, 11, "NONE"));
    rej.setField(37, o ? o->orderid : "NONE");
    rej.setField(39, o ? status_of(*o) : "8");
    rej.setField(41, interop::field_or(request, 41, "NONE"));
    rej.setField(58, text);
    rej.setField(102, reason);       // CxlRejReason: 0 too late, 1 unknown order
    rej.setField(434, response_to);  // CxlRejResponseTo: 1 cancel, 2 replace
    FIX::Session::sendToTarget(rej, id);
  }

  std::shared_ptr<Order> find(const FIX::Message& m) {
    auto it = by_clordid_.find(interop::field_or(m, 41, ""));
    return it == by_clordid_.end() ? nullptr : it->second;
  }

  void fill(const FIX::SessionID& id, Order& o, long quantity, const std::string& px) {
    o.cum += quantity;
    o.notional += quantity * std::stod(px);
    if (o.cum >= o.qty) o.done = true;
    std::string exec_type = is42_ ? (o.cum >= o.qty ? "2" : "1") : "F";
    send_report(id, o, exec_type, status_of(o), quantity, px);
  }

  void on_new_order(const FIX::Message& m, const FIX::SessionID& id) {
    auto o = std::make_shared<Order>();
    o->clordid = interop::field_or(m, 11, "");
    o->symbol = interop::field_or(m, 55, "");
    o->side = interop::field_or(m, 54, "1");
    o->ordtype = interop::field_or(m, 40, "1");
    o->price = o->ordtype == "1" ? "" : interop::field_or(m, 44, "");
    o->qty = long(std::llround(std::stod(interop::field_or(m, 38, "0"))));
    o->orderid = "O" + std::to_string(next_order_++);
    if (o->symbol == "REJECT") {
      o->orderid = "REJ" + o->orderid;
      o->done = true;
      send_report(id, *o, "8", "8", 0, "", "", "unknown symbol REJECT");
      return;
    }
    by_clordid_[o->clordid] = o;
    orders_.push_back(o);
    send_report(id, *o, "0", "0", 0, "");
    if (o->ordtype == "1") fill(id, *o, o->qty, "100");
    else if (o->qty >= 2 && !o->price.empty()) fill(id, *o, o->qty / 2, o->price);
  }

  void on_cancel(const FIX::Message& m, const FIX::SessionID& id) {
    auto o = find(m);
    if (!o) return send_cancel_reject(id, m, "1", o, "1", "Unknown order");
    if (o->done) return send_cancel_reject(id, m, "1", o, "0", "Order already closed");
    std::string orig = o->clordid;
    o->done = true;
    o->clordid = interop::field_or(m, 11, "");
    by_clordid_[o->clordid] = o;
    send_report(id, *o, "4", "4", 0, "", orig);
  }

  void on_replace(const FIX::Message& m, const FIX::SessionID& id) {
    auto o = find(m);
    if (!o) return send_cancel_reject(id, m, "2", o, "1", "Unknown order");
    if (o->done) return send_cancel_reject(id, m, "2", o, "0", "Order already closed");
    long new_qty = long(std::llround(std::stod(interop::field_or(m, 38, std::to_string(o->qty)))));
    if (new_qty <= o->cum)
      return send_cancel_reject(id, m, "2", o, "99", "New quantity not above filled quantity");
    std::string orig = o->clordid;
    o->qty = new_qty;
    if (m.isSetField(44)) o->price = m.getField(44);
    o->clordid = interop::field_or(m, 11, "");
    by_clordid_[o->clordid] = o;
    send_report(id, *o, "5", is42_ ? "5" : status_of(*o), 0, "", orig);
  }

  void on_status(const FIX::Message& m, const FIX::SessionID& id) {
    std::string clordid = interop::field_or(m, 11, "");
    auto it = by_clordid_.find(clordid);
    if (it == by_clordid_.end()) {
      Order unknown;
      unknown.clordid = clordid;
      unknown.orderid = interop::field_or(m, 37, "NONE");
      unknown.symbol = interop::field_or(m, 55, "NONE");
      unknown.side = interop::field_or(m, 54, "1");
      unknown.done = true;
      send_report(id, unknown, is42_ ? "8" : "I", "8", 0, "", "", "Unknown order", "", true);
      return;
    }
    const Order& o = *it->second;
    std::string status = status_of(o);
    send_report(id, o, is42_ ? status : "I", status, 0, "", "", "", clordid, true);
  }

  void on_mass_cancel(const FIX::Message& m, const FIX::SessionID& id) {
    std::string symbol = interop::field_or(m, 55, "");
    std::string request_type = interop::field_or(m, 530, "7");
    int affected = 0;
    for (auto& o : orders_) {
      if (o->done || (request_type == "1" && o->symbol != symbol)) continue;
      o->done = true;
      ++affected;
      send_report(id, *o, "4", "4", 0, "", "", "mass cancel");
    }
    FIX::Message report;
    report.getHeader().setField(FIX::MsgType("r"));
    report.setField(11, interop::field_or(m, 11, "NONE"));
    report.setField(37, "MASS" + std::to_string(next_order_++));
    if (!symbol.empty()) report.setField(55, symbol);
    report.setField(530, request_type);
    report.setField(531, request_type);  // MassCancelResponse mirrors the request type
    report.setField(533, std::to_string(affected));
    FIX::Session::sendToTarget(report, id);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  double duration = 120;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    if (key == "--config") config = value;
    else if (key == "--duration") duration = std::stod(value);
    else { std::cerr << "unknown option " << key << std::endl; return 2; }
  }
  if (config.empty()) { std::cerr << "--config is required" << std::endl; return 2; }

  try {
    FIX::SessionSettings settings(config);
    AcceptorApp app;
    FIX::MemoryStoreFactory store;
    FIX::FileLogFactory log(settings);
    FIX::SocketAcceptor acceptor(app, store, settings, log);
    acceptor.start();
    interop::emit("READY");

    // Stop when the test closes our stdin, or at the deadline, whichever comes first.
    std::atomic<bool> stdin_closed(false);
    std::thread reader([&] {
      std::string line;
      while (std::getline(std::cin, line)) {}
      stdin_closed = true;
    });
    reader.detach();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(duration);
    while (!stdin_closed && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));

    for (const auto& id : app.sessions) {
      FIX::Session* session = FIX::Session::lookupSession(id);
      if (!session) continue;
      interop::emit("SUMMARY " + id.toString() +
                    " next_sender=" + std::to_string(session->getExpectedSenderNum()) +
                    " next_target=" + std::to_string(session->getExpectedTargetNum()));
    }
    acceptor.stop(true);
    return 0;
  } catch (std::exception& e) {
    interop::emit(std::string("FATAL ") + e.what());
    return 1;
  }
}
