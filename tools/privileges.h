// Dropping root after the listeners are bound (zcio-server --user): the
// export is then served with that user's rights, so the kernel's own
// permission checks bound what any client can read or write.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.h"

namespace zcio::tools {

struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
};

// A user name or a numeric uid; the group is the user's primary group.
Result<Credentials> lookUpUser(const std::string& name);
// setgroups({gid}), setgid, setuid, then checks that root cannot be regained.
Result<void> dropPrivileges(const Credentials& to);

}  // namespace zcio::tools
