// Fuzz target for HTTP request collection (kronopd/http.h): arbitrary bytes, fed in two
// pieces split at a point the input chooses, must end in a request, an error with a
// status, or a need for more bytes; never a crash, and never more bytes consumed than given.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using kronop::daemon::http::RequestParser;
  if (size < 1) return 0;
  std::string_view input(reinterpret_cast<const char *>(data) + 1, size - 1);
  const std::size_t split = input.empty() ? 0 : data[0] % input.size();
  kronop::daemon::http::Limits limits;
  limits.max_header_bytes = 2048;
  limits.max_body = 1024;
  RequestParser parser(limits);
  int requests = 0;
  for (std::string_view chunk : {input.substr(0, split), input.substr(split)}) {
    while (!chunk.empty()) {
      std::size_t used = 0;
      const auto state = parser.feed(chunk, &used);
      FUZZ_CHECK(used <= chunk.size());
      if (state == RequestParser::State::kError) {
        const int s = parser.error_status();
        FUZZ_CHECK(s == 400 || s == 413 || s == 431 || s == 501 || s == 505);
        return 0;
      }
      if (state == RequestParser::State::kNeedMore) {
        FUZZ_CHECK(used == chunk.size());  // a partial request is kept by the parser
        break;
      }
      FUZZ_CHECK(parser.request().body.size() <= limits.max_body);
      if (parser.request().upgrade || ++requests > 256) return 0;  // the rest is not HTTP
      chunk.remove_prefix(used);
      parser.reset();
    }
  }
  return 0;
}
