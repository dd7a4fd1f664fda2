// A main() for the fuzz targets when they are built without libFuzzer (KRONOP_FUZZ=OFF, or
// any compiler): runs LLVMFuzzerTestOneInput once on every file named on the command line,
// and on every regular file inside each directory named, in name order. This is how the
// normal test suite exercises the fuzz entry points over the committed seed corpus, and
// how a crash file found elsewhere is replayed under a debugger.
//
// Each input is copied into a heap buffer of exactly its size, as libFuzzer does, so that
// AddressSanitizer (KRONOP_SANITIZE) sees a read past its end.
//
// Exit status: 0 when every input ran, 2 on a usage or I/O error. A failed invariant
// aborts, so ctest reports the test as failed and names the input last printed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
// Optional in a target, as with libFuzzer.
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

namespace fs = std::filesystem;

namespace {

bool run_file(const fs::path &path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return false;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  // new[] of 0 bytes still gives a distinct, non-null pointer, as libFuzzer's input has.
  std::unique_ptr<uint8_t[]> input(new uint8_t[bytes.size()]);
  std::copy(bytes.begin(), bytes.end(), input.get());
  std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(input.get(), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    std::error_code ec;
    if (!fs::is_directory(arg, ec)) {
      if (!run_file(arg)) return 2;
      ++runs;
      continue;
    }
    std::vector<fs::path> files;
    for (const auto &entry : fs::directory_iterator(arg, ec)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    if (ec) {
      std::fprintf(stderr, "replay: cannot list %s: %s\n", arg.c_str(), ec.message().c_str());
      return 2;
    }
    std::sort(files.begin(), files.end());
    for (const auto &f : files) {
      if (!run_file(f)) return 2;
      ++runs;
    }
  }
  if (runs == 0) {
    std::fprintf(stderr, "replay: no inputs found\n");
    return 2;
  }
  std::fprintf(stderr, "replay: %zu input(s) ran\n", runs);
  return 0;
}
