// Opening a log written before blocks (schema version 1: a row per message in `messages`,
// with a unique index on the producer identity and one on publish time) migrates it in
// place: each topic's messages, in seq order, go into blocks as the writer makes them
// (log_store.h), the old table and its indexes are dropped, and the version becomes 2; all
// in one transaction, so a migration cut short (kronopd killed, disk full) leaves the file as
// it was, to be migrated at the next start. Large files say how far it got in the log
// (event=log_migrating, every million messages). Readers that know version 1 read the file
// as is until then (common/log_reader.h).
#pragma once

#include <string>

#include "kronop/result.h"

struct sqlite3;

namespace kronop {
class LogBlockCodec;
}

namespace kronop::daemon {

// `blocks_schema`: the statements that create the blocks table and its index.
Result<bool> migrate_log_v1(sqlite3 *db, const std::string &path, const char *blocks_schema,
                            LogBlockCodec &codec);

}  // namespace kronop::daemon
