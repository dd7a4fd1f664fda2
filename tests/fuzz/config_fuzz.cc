// Fuzz target for kronopd's configuration file, read as kronopd reads it: the input is
// written to a file and parsed by parse_options (kronopd/config.h) with --config naming it,
// on a fresh CLI::App with every option add_options declares, exactly as main() does.
// A fault must come back as an error naming the file (never a crash, a leak or another
// exception); a file that is accepted prints (--print-config's text) a file that parses
// back to the same effective configuration.
#include <fcntl.h>
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "config.h"
#include "fuzz_check.h"

namespace {

std::string g_path;  // the file each input is written to, removed at exit

bool write_file(const std::string &path, const char *data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = true;
  for (std::size_t off = 0; off < size && ok;) {
    const ssize_t n = ::write(fd, data + off, size - off);
    ok = n > 0;
    if (ok) off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return ok;
}

// Parses the file at `path` as kronopd would; the effective options when it is accepted.
bool parse(const std::string &path, std::vector<std::pair<std::string, std::string>> &options,
           std::string &error) {
  kronop::daemon::Config config;
  CLI::App app{"kronopd"};
  kronop::daemon::add_options(app, config);
  try {
    auto parsed = kronop::daemon::parse_options(app, {"--config", path});
    if (!parsed.ok()) {
      error = parsed.error().message;
      return false;
    }
  } catch (const CLI::ParseError &e) {
    error = e.what();  // --help or --version: main() prints and exits
    return false;
  }
  options = kronop::daemon::effective_options(app, config);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  char name[] = "/tmp/kronop-config-fuzz-XXXXXX";
  const int fd = ::mkstemp(name);
  FUZZ_CHECK(fd >= 0);
  ::close(fd);
  g_path = name;
  std::atexit([] { ::unlink(g_path.c_str()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FUZZ_CHECK(write_file(g_path, reinterpret_cast<const char *>(data), size));
  std::vector<std::pair<std::string, std::string>> options;
  std::string error;
  if (!parse(g_path, options, error)) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  // What --print-config prints is a file that gives the same configuration back.
  const std::string printed = kronop::daemon::format_config(options);
  FUZZ_CHECK(write_file(g_path, printed.data(), printed.size()));
  std::vector<std::pair<std::string, std::string>> again;
  if (!parse(g_path, again, error)) {
    std::fprintf(stderr, "printed configuration refused: %s\n%s", error.c_str(), printed.c_str());
    FUZZ_CHECK(false);
  }
  FUZZ_CHECK(again == options);
  return 0;
}
