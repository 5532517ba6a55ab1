// A real QuickFIX initiator that plays a script against the OMS server.
//
//   qf_oms_client --config FILE --script FILE [--timeout S]
//
// Script lines (written by tests/e2e/test_quickfix_oms.py):
//   SEND <MsgType> <tag>=<value>|<tag>=<value>|...   one application message, fields in order;
//                                                   the value NOW becomes the current UTC time
//   WAIT <n>                                        until n application messages arrived in total
// Every message QuickFIX sends or accepts is printed (SENT/RECV lines, see qf_common.h); the
// Python test checks the answers. Exit 0 when every WAIT was met, the logout was clean and no
// session-level Reject arrived.
#include "qf_common.h"

#include <quickfix/FileLog.h>
#include <quickfix/MessageStore.h>
#include <quickfix/SocketInitiator.h>

#include <fstream>
#include <sstream>

namespace {

class App : public interop::InitiatorApp {
 public:
  int app_received = 0, session_rejects = 0;

 private:
  void on_received(const FIX::Message& m, const FIX::SessionID&, bool application) override {
    if (application) waiter.update([&] { app_received++; });
    else if (interop::msg_type(m) == "3") waiter.update([&] { session_rejects++; });
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string config, script;
  double timeout = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    if (key == "--config") config = value;
    else if (key == "--script") script = value;
    else if (key == "--timeout") timeout = std::stod(value);
    else { std::cerr << "unknown option " << key << std::endl; return 2; }
  }
  if (config.empty() || script.empty()) { std::cerr << "--config and --script are required" << std::endl; return 2; }
  try {
    FIX::SessionSettings settings(config);
    App app;
    FIX::MemoryStoreFactory store;
    FIX::FileLogFactory log(settings);
    FIX::SocketInitiator initiator(app, store, settings, log);
    initiator.start();
    auto fail = [&](const std::string& why) {
      interop::emit("RESULT fail " + why);
      initiator.stop(true);
      return 1;
    };
    if (!app.waiter.wait_for(timeout, [&] { return app.logged_on; })) return fail("no_logon");
    std::ifstream in(script);
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.rfind("SEND ", 0) == 0) {
        std::istringstream words(line.substr(5));
        std::string type, fields;
        words >> type;
        std::getline(words, fields);
        FIX::Message msg;
        msg.getHeader().setField(FIX::MsgType(type));
        std::istringstream parts(fields.substr(fields.find_first_not_of(' ')));
        std::string part;
        while (std::getline(parts, part, '|')) {
          auto eq = part.find('=');
          if (eq == std::string::npos) continue;
          std::string value = part.substr(eq + 1);
          if (value == "NOW") value = interop::utc_now_millis();
          msg.setField(std::stoi(part.substr(0, eq)), value);
        }
        if (!FIX::Session::sendToTarget(msg, app.session_id)) return fail("send_failed line " + std::to_string(line_no));
      } else if (line.rfind("WAIT ", 0) == 0) {
        int n = std::stoi(line.substr(5));
        if (!app.waiter.wait_for(timeout, [&] { return app.app_received >= n; }))
          return fail("wait_timeout line " + std::to_string(line_no) + " received " + std::to_string(app.app_received));
      }
    }
    FIX::Session::lookupSession(app.session_id)->logout("script done");
    if (!app.waiter.wait_for(timeout, [&] { return app.logged_out; })) return fail("no_logout");
    bool ok = app.session_rejects == 0;
    interop::emit(std::string("RESULT ") + (ok ? "ok" : "fail") + " received=" + std::to_string(app.app_received) +
                  " rejects=" + std::to_string(app.session_rejects));
    initiator.stop();
    return ok ? 0 : 1;
  } catch (std::exception& e) {
    interop::emit(std::string("RESULT fail exception ") + e.what());
    return 1;
  }
}
