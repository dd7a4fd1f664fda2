// A power cut for SQLite, in a test: an SQLite VFS over the real one ("unix") that passes
// every call through and remembers, for each file, what each write since the file's last
// sync replaced. snapshot() copies the files into another directory as a power cut at that
// instant would leave them: every write not yet synced undone (a disk may have kept some of
// them; keeping none is the case that loses most). The copy is then opened as it is after
// the restart: SQLite recovers from whatever the WAL still holds.
//
// install() makes it SQLite's default VFS for the process (every connection opened after
// it, kronopd's log writer and checkpointer included); uninstall() puts the real one back.
#pragma once

#include <string>

namespace kronop::test {

class PowerCutVfs {
 public:
  static void install();
  static void uninstall();
  // Copies every file opened through the VFS under `dir` into `to` (same names), with the
  // writes not yet synced undone. Safe while other threads write: each file is copied under
  // its lock.
  static void snapshot(const std::string &dir, const std::string &to);
  // Syncs seen since install(), all files together.
  static unsigned long long syncs();
};

}  // namespace kronop::test
