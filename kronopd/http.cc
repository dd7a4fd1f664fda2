// HTTP/1.1 request collection over http-parser; see http.h (the checks it adds to the
// parser's, and why each is made where it is).
#include "http.h"

#include "kronop/v1/api.pb.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <climits>

namespace kronop::daemon::http {
namespace {

RequestParser *self(http_parser *p) { return static_cast<RequestParser *>(p->data); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Headers a request must not repeat: two Hosts may route one request two ways (RFC 9112
// §3.2), two WebSocket keys or versions leave the handshake's answer ambiguous (RFC 6455
// §11.3.1, §11.3.5).
constexpr std::string_view kSingleHeaders[] = {"host", "sec-websocket-key",
                                               "sec-websocket-version"};

// At most this much of a client's parameter name is quoted back in an error.
constexpr std::size_t kMaxQuotedName = 64;

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view Request::header(std::string_view lower_name) const {
  for (const auto &[name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

bool percent_decode(std::string_view in, std::string *out, bool form) {
  out->clear();
  out->reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && form) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool Request::query_param(std::string_view name, std::string *value) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    std::size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    std::size_t eq = pair.find('=');
    std::string key;
    if (!percent_decode(pair.substr(0, eq), &key, true) || key != name) continue;
    if (eq == std::string_view::npos) {
      value->clear();
      return true;
    }
    return percent_decode(pair.substr(eq + 1), value, true);
  }
  return false;
}

RequestParser::RequestParser(Limits limits) : limits_(limits) {
  settings_.on_message_begin = on_message_begin;
  settings_.on_url = on_url;
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
  reset();
}

void RequestParser::reset() {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  request_ = Request{};
  header_bytes_ = 0;
  in_value_ = false;
  complete_ = false;
  no_version_ = false;
  error_status_ = 0;
  error_reason_.clear();
}

int RequestParser::fail(int status, std::string reason) {
  error_status_ = status;
  error_reason_ = std::move(reason);
  // Non-zero stops http-parser (HPE_CB_*); not 1 or 2, which on_headers_complete would
  // read as "no body" / "upgrade".
  return -1;
}

int RequestParser::on_message_begin(http_parser *) { return 0; }

int RequestParser::on_url(http_parser *p, const char *at, std::size_t len) {
  RequestParser *s = self(p);
  s->header_bytes_ += len;
  if (s->header_bytes_ > s->limits_.max_header_bytes) return s->fail(431, "request line too long");
  s->request_.target.append(at, len);
  // The parser reports the target when it sees the byte after it (or, with more to come,
  // at the end of the bytes it was given). CR or LF there means no " HTTP/x.y": the parser
  // calls that HTTP/0.9, which is no version at all to RFC 9112 §3.
  if (at + len < s->feed_end_ && (at[len] == '\r' || at[len] == '\n')) s->no_version_ = true;
  return 0;
}

int RequestParser::on_header_field(http_parser *p, const char *at, std::size_t len) {
  RequestParser *s = self(p);
  s->header_bytes_ += len;
  if (s->header_bytes_ > s->limits_.max_header_bytes) return s->fail(431, "headers too large");
  // The non-strict parser takes ' ' as part of a name (a tab it refuses itself) and then
  // matches "Content-Length " as Content-Length: refused before it reads the value.
  if (std::string_view(at, len).find_first_of(" \t") != std::string_view::npos) {
    return s->fail(400, "whitespace in a header name (none is allowed before the colon)");
  }
  auto &headers = s->request_.headers;
  if (s->in_value_ || headers.empty()) {
    if (headers.size() >= s->limits_.max_headers) return s->fail(431, "too many headers");
    headers.emplace_back();
    s->in_value_ = false;
  }
  std::string &name = headers.back().first;
  std::size_t old = name.size();
  name.append(at, len);
  std::transform(name.begin() + static_cast<std::ptrdiff_t>(old), name.end(),
                 name.begin() + static_cast<std::ptrdiff_t>(old),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return 0;
}

int RequestParser::on_header_value(http_parser *p, const char *at, std::size_t len) {
  RequestParser *s = self(p);
  s->header_bytes_ += len;
  if (s->header_bytes_ > s->limits_.max_header_bytes) return s->fail(431, "headers too large");
  s->in_value_ = true;
  s->request_.headers.back().second.append(at, len);
  return 0;
}

int RequestParser::on_headers_complete(http_parser *p) {
  RequestParser *s = self(p);
  Request &r = s->request_;
  r.method = http_method_str(static_cast<http_method>(p->method));
  r.http_major = p->http_major;
  r.http_minor = p->http_minor;
  r.keep_alive = http_should_keep_alive(p) != 0;
  r.upgrade = p->upgrade != 0;
  if (int rc = s->check_version(); rc != 0) return rc;
  if (int rc = s->join_repeated_headers(); rc != 0) return rc;
  if (int rc = s->check_transfer_encoding(); rc != 0) return rc;
  if (p->content_length != ULLONG_MAX && p->content_length > s->limits_.max_body) {
    return s->fail(413, "body larger than " + std::to_string(s->limits_.max_body) + " bytes");
  }
  http_parser_url url;
  http_parser_url_init(&url);
  if (http_parser_parse_url(r.target.data(), r.target.size(), 0, &url) != 0) {
    return s->fail(400, "malformed request target");
  }
  std::string_view raw_path = "/";
  if (url.field_set & (1 << UF_PATH)) {
    raw_path =
        std::string_view(r.target).substr(url.field_data[UF_PATH].off, url.field_data[UF_PATH].len);
  }
  if (url.field_set & (1 << UF_QUERY)) {
    r.query = r.target.substr(url.field_data[UF_QUERY].off, url.field_data[UF_QUERY].len);
  }
  if (!percent_decode(raw_path, &r.path, false))
    return s->fail(400, "malformed percent-escape in path");
  return s->check_query();
}

int RequestParser::check_version() {
  if (no_version_) return fail(400, "the request line has no HTTP version");
  const Request &r = request_;
  if (r.http_major != 1 || r.http_minor > 1) return fail(505, "HTTP version not supported");
  return 0;
}

int RequestParser::join_repeated_headers() {
  auto &headers = request_.headers;
  for (std::size_t i = 0; i < headers.size(); ++i) {
    const std::string &name = headers[i].first;
    const bool single = std::find(std::begin(kSingleHeaders), std::end(kSingleHeaders), name) !=
                        std::end(kSingleHeaders);
    for (std::size_t j = i + 1; j < headers.size();) {
      if (headers[j].first != name) {
        ++j;
        continue;
      }
      if (single) return fail(400, "more than one " + name + " header");
      // The joined list is no longer than the bytes already counted against the limit.
      headers[i].second += ", ";
      headers[i].second += headers[j].second;
      headers.erase(headers.begin() + static_cast<std::ptrdiff_t>(j));
    }
  }
  return 0;
}

int RequestParser::check_transfer_encoding() {
  const std::string_view te = request_.header("transfer-encoding");
  if (te.empty()) return 0;
  if (request_.http_minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
  // The parser frames the body as chunked when the list ends in "chunked"; kronopd decodes
  // nothing else, so that has to be the list's only coding.
  std::size_t codings = 0, chunked = 0;
  std::string_view other, last;
  for_each_list_element(te, [&](std::string_view coding) {
    ++codings;
    if (iequals(coding, "chunked")) {
      ++chunked;
    } else if (other.empty()) {
      other = coding;
    }
    last = coding;
    return true;
  });
  if (codings == 0 || !iequals(last, "chunked")) {
    return fail(400, "Transfer-Encoding must end with chunked");
  }
  if (chunked > 1) return fail(400, "Transfer-Encoding applies chunked more than once");
  if (!other.empty()) {
    return fail(501, "transfer coding \"" + std::string(other.substr(0, kMaxQuotedName)) +
                         "\" is not supported (only chunked)");
  }
  return 0;
}

int RequestParser::check_query() {
  std::string_view rest = request_.query;
  std::string decoded;
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (percent_decode(key, &decoded, true) &&
        (eq == std::string_view::npos || percent_decode(pair.substr(eq + 1), &decoded, true))) {
      continue;
    }
    // The name as the client wrote it, cut short and printable: it goes into a log line.
    std::string name(key.substr(0, kMaxQuotedName));
    for (char &c : name) {
      if (c < 0x20 || c > 0x7e) c = '?';
    }
    return fail(400, "malformed percent-escape in query parameter \"" + name + "\"");
  }
  return 0;
}

int RequestParser::on_body(http_parser *p, const char *at, std::size_t len) {
  RequestParser *s = self(p);
  if (s->request_.body.size() + len > s->limits_.max_body) {
    return s->fail(413, "body larger than " + std::to_string(s->limits_.max_body) + " bytes");
  }
  s->request_.body.append(at, len);
  return 0;
}

int RequestParser::on_message_complete(http_parser *p) {
  RequestParser *s = self(p);
  s->complete_ = true;
  // Stop right after this request: the caller answers it before reading the next one,
  // and after an upgrade the following bytes are not HTTP at all.
  http_parser_pause(p, 1);
  return 0;
}

RequestParser::State RequestParser::feed(std::string_view data, std::size_t *consumed) {
  *consumed = 0;
  if (error_status_ != 0) return State::kError;
  if (complete_) return State::kComplete;
  feed_end_ = data.data() + data.size();
  std::size_t n = http_parser_execute(&parser_, &settings_, data.data(), data.size());
  feed_end_ = nullptr;
  *consumed = n;
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  if (complete_) {
    // http-parser counts the byte it paused on as parsed only for some states; the request
    // ends where it stopped in either case.
    if (err == HPE_PAUSED) http_parser_pause(&parser_, 0);
    return State::kComplete;
  }
  if (error_status_ != 0) return State::kError;
  if (err != HPE_OK) {
    if (err == HPE_HEADER_OVERFLOW) {
      fail(431, "headers too large");
    } else if (err == HPE_INVALID_VERSION) {
      fail(505, "HTTP version not supported");
    } else {
      fail(400, http_errno_description(err));
    }
    return State::kError;
  }
  return State::kNeedMore;
}

const char *status_text(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

std::string response(int status, std::string_view content_type, std::string_view body,
                     std::string_view extra_headers, bool close) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) + "\r\n";
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += extra_headers;
  out += "\r\n";
  out += body;
  return out;
}

std::string error_response(int status, std::string_view message, bool close) {
  // Our own message type, not google.protobuf.Struct: Struct's code lives in libprotobuf,
  // built without the sanitizers, and its inline map code then disagrees with ours under
  // TSan.
  kronop::v1::ApiErrorBody root;
  root.mutable_error()->set_status(status);
  root.mutable_error()->set_message(std::string(message));
  std::string body;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(root, &body, opts);
  return response(status, "application/json", body, {}, close);
}

}  // namespace kronop::daemon::http
