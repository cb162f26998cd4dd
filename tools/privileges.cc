#include "tools/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace zcio::tools {

Result<Credentials> lookUpUser(const std::string& name) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  int rc = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (found == nullptr) {
    char* end = nullptr;
    unsigned long uid = std::strtoul(name.c_str(), &end, 10);
    if (!name.empty() && *end == '\0') {
      rc = ::getpwuid_r(static_cast<uid_t>(uid), &entry, buffer.data(), buffer.size(), &found);
    }
  }
  if (found == nullptr) {
    return makeError(rc != 0 ? rc : ENOENT, "--user '" + name + "': no such user");
  }
  return Credentials{found->pw_uid, found->pw_gid};
}

Result<void> dropPrivileges(const Credentials& to) {
  if (::geteuid() != 0) {
    if (::geteuid() == to.uid) return okResult();
    return makeError(EPERM, "--user needs root to switch users");
  }
  // Groups first: after setuid we could no longer change them. glibc applies
  // each change to every thread of the process.
  // rdma:// registers memory for every new connection; without root's
  // CAP_IPC_LOCK that needs a memlock limit, which only root can raise.
  rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  (void)::setrlimit(RLIMIT_MEMLOCK, &unlimited);
  if (::setgroups(1, &to.gid) != 0) return errnoError("setgroups");
  if (::setgid(to.gid) != 0) return errnoError("setgid");
  if (::setuid(to.uid) != 0) return errnoError("setuid");
  if (to.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0)) {
    return makeError(EPERM, "root could be regained after dropping privileges");
  }
  return okResult();
}

}  // namespace zcio::tools
