// The route table; see routes.h.
#include "routes.h"

#include "http.h"

namespace kronop::daemon {
namespace {

constexpr std::string_view kRestMethods = "GET, POST";
constexpr std::string_view kSystemMethods = "GET, HEAD";

// One row per endpoint: an exact path, or a prefix and suffix around the parameter.
struct RouteRow {
  std::string_view prefix;
  std::string_view suffix;
  bool exact;
  RouteKind kind;
  std::string_view topic_prefix;  // plain sockets: the topic is this + the parameter
  std::string_view allow;
};

constexpr RouteRow kRoutes[] = {
    {"/ws/websocket", "", true, RouteKind::kPhoenixSocket, "", ""},
    {"/ws/websocket/", "", true, RouteKind::kPhoenixSocket, "", ""},
    {"/ws/system", "", true, RouteKind::kPlainSocket, "system", ""},
    {"/ws/reel/", "", false, RouteKind::kPlainSocket, "reel:", ""},
    {"/ws/user/", "", false, RouteKind::kPlainSocket, "user:", ""},
    {"/api/v1/reels/", "/updates", false, RouteKind::kReelUpdates, "", kRestMethods},
    {"/api/v1/users/", "/presence", false, RouteKind::kUserPresence, "", kRestMethods},
    {"/metrics", "", true, RouteKind::kSystem, "", kSystemMethods},
    {"/api/v1/system/health", "", true, RouteKind::kSystem, "", kSystemMethods},
    {"/api/v1/system/stats", "", true, RouteKind::kSystem, "", kSystemMethods},
    {"/api/v1/system/performance", "", true, RouteKind::kSystem, "", kSystemMethods},
    {"/api/v1/connections/stats", "", true, RouteKind::kSystem, "", kSystemMethods},
};

}  // namespace

bool Route::allows(std::string_view method) const {
  if (allow.empty()) return true;
  for (std::string_view rest = allow; !rest.empty();) {
    const auto comma = rest.find(", ");
    if (rest.substr(0, comma) == method) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 2);
  }
  return false;
}

std::optional<Route> match_route(std::string_view path) {
  for (const RouteRow &r : kRoutes) {
    if (r.exact) {
      if (path == r.prefix) return Route{r.kind, std::string(r.topic_prefix), r.allow};
      continue;
    }
    if (!path.starts_with(r.prefix) || !path.ends_with(r.suffix) ||
        path.size() < r.prefix.size() + r.suffix.size()) {
      continue;
    }
    std::string_view param =
        path.substr(r.prefix.size(), path.size() - r.prefix.size() - r.suffix.size());
    return Route{r.kind, std::string(r.topic_prefix) + std::string(param), r.allow};
  }
  return std::nullopt;
}

std::optional<std::string> http_refusal(const std::optional<Route> &route, std::string_view path,
                                        std::string_view method) {
  if (!route) return http::error_response(404, "no such endpoint: " + std::string(path), true);
  if (route->allows(method)) return std::nullopt;
  std::string r = http::error_response(
      405, route->kind == RouteKind::kSystem ? "use GET" : "use GET or POST", true);
  // The Allow header belongs with the status line's headers.
  r.insert(r.find("\r\n") + 2, "Allow: " + std::string(route->allow) + "\r\n");
  return r;
}

}  // namespace kronop::daemon
