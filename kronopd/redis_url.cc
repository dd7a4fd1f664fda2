#include "redis_url.h"

#include <cerrno>
#include <charconv>

namespace kronop::daemon {

namespace {

// The URL may hold a password: errors say what is wrong without repeating it.
Error bad(const std::string &why) { return Error{-EINVAL, "--redis: " + why}; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoded; false on a malformed escape.
bool percent_decode(std::string_view in, std::string *out) {
  out->clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_digit(in[i + 1]);
    const int lo = hex_digit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool parse_number(std::string_view text, uint64_t max, uint64_t *out) {
  if (text.empty() || text.size() > 10) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && *out <= max;
}

// A host name (letters, digits, '-', '.', '_') or an IPv4 address; IPv6 comes bracketed.
bool valid_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool valid_ipv6(std::string_view host) {
  if (host.size() < 2 || host.size() > 45) return false;
  for (char c : host) {
    const bool ok = hex_digit(c) >= 0 || c == ':' || c == '.';
    if (!ok) return false;
  }
  return host.find(':') != std::string_view::npos;
}

Result<RedisEndpoint> parse_unix(std::string_view rest) {
  RedisEndpoint e;
  e.unix_socket = true;
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.empty() || rest.front() != '/') {
    return bad("a unix:// URL names an absolute path (unix:///run/redis/redis.sock)");
  }
  if (rest.size() > 107) return bad("the socket path is longer than a Unix socket allows");
  if (!percent_decode(rest, &e.path) || e.path.find('\0') != std::string::npos) {
    return bad("the socket path has a malformed %-escape");
  }
  if (!query.empty()) {
    uint64_t db = 0;
    if (query.substr(0, 3) != "db=" || !parse_number(query.substr(3), 0x7fffffff, &db)) {
      return bad("a unix:// URL takes only ?db=N (a database number)");
    }
    e.db = static_cast<uint32_t>(db);
  }
  return e;
}

}  // namespace

std::string RedisEndpoint::display() const {
  // Appended piece by piece: GCC 12's -Wrestrict misreads "literal" + std::string&& at -O3.
  std::string out(unix_socket ? "unix://" : "redis://");
  if (unix_socket) {
    out.append(path);
    if (db != 0) out.append("?db=").append(std::to_string(db));
    return out;
  }
  if (!user.empty() || !password.empty()) out.append(user).append(password.empty() ? "@" : ":***@");
  const bool ipv6 = host.find(':') != std::string::npos;
  if (ipv6) out.push_back('[');
  out.append(host);
  if (ipv6) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(port));
  if (db != 0) out.append("/").append(std::to_string(db));
  return out;
}

Result<RedisEndpoint> parse_redis_url(std::string_view url) {
  constexpr std::string_view kRedis = "redis://";
  constexpr std::string_view kUnix = "unix://";
  if (url.size() > 4096) return bad("the URL is longer than 4096 bytes");
  if (url.substr(0, kUnix.size()) == kUnix) return parse_unix(url.substr(kUnix.size()));
  if (url.substr(0, kRedis.size()) != kRedis) {
    return bad(
        "expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH "
        "(rediss:// and other schemes are not supported)");
  }
  std::string_view rest = url.substr(kRedis.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad("a redis:// URL takes no query or fragment");
  }
  RedisEndpoint e;
  // The path: /DB.
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view db_text = rest.substr(slash + 1);
    uint64_t db = 0;
    if (!db_text.empty() && !parse_number(db_text, 0x7fffffff, &db)) {
      return bad("the path must be a database number (/0, /1, ...)");
    }
    e.db = static_cast<uint32_t>(db);
    rest = rest.substr(0, slash);
  }
  // USER:PASSWORD@ (the last '@': a password may hold one, percent-encoded or not).
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    const std::string_view user =
        colon == std::string_view::npos ? userinfo : userinfo.substr(0, colon);
    const std::string_view password =
        colon == std::string_view::npos ? std::string_view() : userinfo.substr(colon + 1);
    if (!percent_decode(user, &e.user) || !percent_decode(password, &e.password)) {
      return bad("the user or password has a malformed %-escape");
    }
    if (colon == std::string_view::npos) {
      // redis://secret@host: the one part is the password (the default user), as redis-cli
      // and most clients read it.
      e.password = e.user;
      e.user.clear();
    }
  }
  // HOST[:PORT], HOST possibly [IPv6].
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("an IPv6 address lacks its ']'");
    e.host = std::string(rest.substr(1, close - 1));
    if (!valid_ipv6(e.host)) return bad("the bracketed host is not an IPv6 address");
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("after ']' only :PORT may follow");
      port_text = rest.substr(1);
      if (port_text.empty()) return bad("the port after ':' is empty");
    }
  } else {
    const auto colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
      port_text = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
      if (port_text.empty()) return bad("the port after ':' is empty");
    }
    e.host = std::string(rest);
    if (!valid_host_name(e.host)) {
      return bad(e.host.empty() ? "the URL names no host"
                                : "the host is not a host name or an address");
    }
  }
  if (!port_text.empty()) {
    uint64_t port = 0;
    if (!parse_number(port_text, 65535, &port) || port == 0) {
      return bad("the port must be a number from 1 to 65535");
    }
    e.port = static_cast<uint16_t>(port);
  }
  return e;
}

}  // namespace kronop::daemon
