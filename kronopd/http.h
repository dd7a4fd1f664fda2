// HTTP/1.1 requests, as kronopd's client port receives them (WebSocket upgrades and the
// REST API), parsed with http-parser: this file only collects what the parser reports,
// enforces limits, and builds responses.
//
// A RequestParser belongs to one connection and is fed whatever arrived, in pieces of any
// size. It stops after each complete request (the parser is paused there), so pipelined
// requests are handled one at a time and, after an upgrade, the bytes that follow the
// request are left to the WebSocket reader. Limits (header bytes, header count, body size)
// turn an oversized request into an error status (431, 413) instead of unbounded memory.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kronop::daemon::http {

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;  // request line + headers
  std::size_t max_headers = 64;
  std::size_t max_body = 1024 * 1024;
};

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: "/ws/websocket?vsn=2.0.0"
  std::string path;    // percent-decoded path of the target
  std::string query;   // raw query string, without '?'
  int http_major = 1;
  int http_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool upgrade = false;  // "Connection: upgrade" with an Upgrade header
  bool keep_alive = true;

  // The first header of that (lower-case) name, or empty.
  std::string_view header(std::string_view lower_name) const;
  // A query parameter, percent-decoded ('+' is a space); nullopt-like: found=false.
  bool query_param(std::string_view name, std::string *value) const;
};

// Percent-decodes `in` (and '+' as space when form is true). False on a malformed escape.
bool percent_decode(std::string_view in, std::string *out, bool form);

class RequestParser {
 public:
  enum class State { kNeedMore, kComplete, kError };

  explicit RequestParser(Limits limits = {});
  RequestParser(const RequestParser &) = delete;
  RequestParser &operator=(const RequestParser &) = delete;

  // Parses from `data`; *consumed says how many bytes were used. kComplete: request()
  // holds one whole request, and the rest of `data` (from *consumed) is the next request's
  // or, after an upgrade, the new protocol's. Call reset() before feeding the next request.
  State feed(std::string_view data, std::size_t *consumed);
  void reset();

  Request &request() { return request_; }
  // After kError: the status to answer with (400, 413, 431, 505) and why.
  int error_status() const { return error_status_; }
  const std::string &error_reason() const { return error_reason_; }

 private:
  static int on_message_begin(http_parser *p);
  static int on_url(http_parser *p, const char *at, std::size_t len);
  static int on_header_field(http_parser *p, const char *at, std::size_t len);
  static int on_header_value(http_parser *p, const char *at, std::size_t len);
  static int on_headers_complete(http_parser *p);
  static int on_body(http_parser *p, const char *at, std::size_t len);
  static int on_message_complete(http_parser *p);
  int fail(int status, std::string reason);

  http_parser parser_{};
  http_parser_settings settings_{};
  Limits limits_;
  Request request_;
  std::size_t header_bytes_ = 0;
  bool in_value_ = false;
  bool complete_ = false;
  int error_status_ = 0;
  std::string error_reason_;
};

// A whole response: status line, Content-Type, Content-Length, `extra_headers` (each
// "Name: value\r\n"), then the body. `close` adds "Connection: close".
std::string response(int status, std::string_view content_type, std::string_view body,
                     std::string_view extra_headers = {}, bool close = false);
// A JSON error body {"error":{"status":S,"message":"..."}} in a response. The message must
// be plain text from the daemon (it is escaped for JSON by a library, not by hand).
std::string error_response(int status, std::string_view message, bool close = false);
const char *status_text(int status);

}  // namespace kronop::daemon::http
