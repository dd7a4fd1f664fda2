// HTTP/1.1 requests, as kronopd's client port receives them (WebSocket upgrades and the
// REST API), parsed with http-parser: this file only collects what the parser reports,
// enforces limits, and builds responses.
//
// A RequestParser belongs to one connection and is fed whatever arrived, in pieces of any
// size. It stops after each complete request (the parser is paused there), so pipelined
// requests are handled one at a time and, after an upgrade, the bytes that follow the
// request are left to the WebSocket reader. Limits (header bytes, header count, body size)
// turn an oversized request into an error status (431, 413) instead of unbounded memory.
//
// http-parser (Debian's 2.9, built non-strict) leaves some of RFC 9110/9112 to its caller,
// and what it lets through reaches the routes as if it were sound, so the collection below
// refuses it, each at the callback where the parser reports the piece:
//  - whitespace in a header name (`Content-Length : 5`): the parser takes the name without
//    the space and honours it; RFC 9112 §5.1 says 400, since a proxy in front may frame the
//    message differently (request smuggling). Refused as the name arrives (on_header_field),
//    before the parser reads its value.
//  - a version other than 1.0 and 1.1 (505), and a request line without one (400): the
//    parser reads "GET /" as HTTP/0.9 and "HTTP/9.9" as 9.9.
//  - Transfer-Encoding: the parser treats any list ending in "chunked" as chunked. Only
//    chunked itself is implemented: another coding before it is 501 (§6.1); a list not
//    ending in chunked is 400 (§6.3: the body's length cannot be known), as is chunked twice
//    or a Transfer-Encoding in an HTTP/1.0 request (§6.1).
//  - a header that must appear once (Host, RFC 9112 §3.2; Sec-WebSocket-Key and -Version,
//    RFC 6455 §11.3) appearing twice: 400. Other repeated headers are joined into one list
//    ("a, b", RFC 9110 §5.3), so header() sees all of a Connection or Upgrade list.
//  - a malformed percent-escape in the query: 400 naming the parameter, so a request never
//    reaches a route with a parameter it cannot read (query_param() would otherwise have to
//    call it absent, and a `token` would silently become anonymous).
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

  // The header of that (lower-case) name (a repeated one joined, see above), or empty.
  std::string_view header(std::string_view lower_name) const;
  // A query parameter, percent-decoded ('+' is a space); false when absent. A parsed
  // request's escapes are all valid (the parser refused it otherwise).
  bool query_param(std::string_view name, std::string *value) const;
};

// Percent-decodes `in` (and '+' as space when form is true). False on a malformed escape.
bool percent_decode(std::string_view in, std::string *out, bool form);

// ASCII case-insensitive equality (header values' tokens: "chunked", "Upgrade").
bool iequals(std::string_view a, std::string_view b);

// Calls fn(element) for each element of an HTTP list ("a, b,,c"; RFC 9110 §5.6.1), trimmed
// of spaces and tabs, empty ones skipped. Stops early when fn returns false.
template <class Fn>
void for_each_list_element(std::string_view list, Fn fn) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view element = list.substr(0, comma);
    while (!element.empty() && (element.front() == ' ' || element.front() == '\t'))
      element.remove_prefix(1);
    while (!element.empty() && (element.back() == ' ' || element.back() == '\t'))
      element.remove_suffix(1);
    if (!element.empty() && !fn(element)) return;
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

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
  // After kError: the status to answer with (400, 413, 431, 501, 505) and why.
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
  // The checks on a whole header section that http-parser leaves to its caller (see the
  // top of this file); 0 or fail()'s -1.
  int check_version();
  int join_repeated_headers();
  int check_transfer_encoding();
  int check_query();

  http_parser parser_{};
  http_parser_settings settings_{};
  Limits limits_;
  Request request_;
  std::size_t header_bytes_ = 0;
  bool in_value_ = false;
  bool complete_ = false;
  // The request line ended right after the target (CR or LF where " HTTP/x.y" belongs).
  bool no_version_ = false;
  // The end of the bytes feed() is parsing: a callback's piece ends before it only when the
  // parser saw the byte that ended the piece.
  const char *feed_end_ = nullptr;
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
