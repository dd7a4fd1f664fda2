// kronopd and its open file limit, as a process started under a given RLIMIT_NOFILE: with no
// --max-connections it raises the soft limit to the hard one and sizes itself to that (no
// warning at all, as on a developer's machine); an explicit --max-connections above what the
// limit allows is warned about, with the numbers.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <fstream>
#include <sstream>
#include <string>

#include "support/test_support.h"

namespace kronop {
namespace {

// The child's limits: a soft limit below the hard one, both far below the old embedded
// default of a million connections.
constexpr rlim_t kSoft = 512;
constexpr rlim_t kHard = 2048;

void low_file_limit() {
  rlimit lim{kSoft, kHard};
  ::setrlimit(RLIMIT_NOFILE, &lim);
}

// "Max open files  2048  2048  files" from /proc/PID/limits: the soft limit.
std::string soft_file_limit(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream words(line.substr(14));
    std::string soft;
    words >> soft;
    return soft;
  }
  return {};
}

class FileLimitTest : public ::testing::Test, protected test::Kronopd {
 protected:
  FileLimitTest() : Kronopd("file-limit-test") {}
  // The log up to the ready line (the file limit is settled before it).
  std::string started_output() {
    EXPECT_TRUE(test::eventually([&] { return output().find("event=ready") != std::string::npos; }))
        << output();
    return output();
  }
};

TEST_F(FileLimitTest, NoMaxConnectionsFitsTheLimitWithoutWarning) {
  ASSERT_TRUE(start({}, low_file_limit)) << output();
  const std::string text = started_output();
  EXPECT_EQ(text.find("file_limit_low"), std::string::npos) << text;
  EXPECT_EQ(text.find("level=warning"), std::string::npos) << text;
  EXPECT_NE(text.find("event=file_limit nofile=2048 raised_from=512 max_connections=1984 "
                      "source=open_file_limit"),
            std::string::npos)
      << text;
  EXPECT_EQ(soft_file_limit(pid), "2048");
}

TEST_F(FileLimitTest, AnExplicitValueAboveTheLimitIsWarnedAbout) {
  ASSERT_TRUE(start({"--max-connections", "5000"}, low_file_limit)) << output();
  const std::string text = started_output();
  EXPECT_NE(text.find("level=warning event=file_limit_low nofile=2048 max_connections=5000 "
                      "clients_possible=1984 hint=\"raise LimitNOFILE (systemd) or ulimit -n, or "
                      "lower --max-connections\""),
            std::string::npos)
      << text;
  EXPECT_EQ(soft_file_limit(pid), "2048");  // raised all the same
}

TEST_F(FileLimitTest, AnExplicitValueWithinTheLimitIsNotWarnedAbout) {
  ASSERT_TRUE(start({"--max-connections", "1984"}, low_file_limit)) << output();
  const std::string text = started_output();
  EXPECT_EQ(text.find("file_limit_low"), std::string::npos) << text;
  EXPECT_NE(text.find("max_connections=1984 source=max-connections"), std::string::npos) << text;
}

}  // namespace
}  // namespace kronop
