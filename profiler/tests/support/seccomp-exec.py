#!/usr/bin/python3
"""seccomp-exec PROFILE COMMAND [ARGS...]: runs COMMAND under a seccomp profile in the OCI
runtime-spec format (what runc and crun apply), through libseccomp (Debian's
python3-seccomp): the test of `syscall-profiler report --seccomp`."""
import errno
import json
import os
import sys

import seccomp

ARCHES = {
    "SCMP_ARCH_X86_64": seccomp.Arch.X86_64,
    "SCMP_ARCH_X86": seccomp.Arch.X86,
    "SCMP_ARCH_X32": seccomp.Arch.X32,
}


def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret)
    if name == "SCMP_ACT_KILL":
        return seccomp.KILL
    sys.exit(f"seccomp-exec: unknown action {name}")


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: seccomp-exec PROFILE COMMAND [ARGS...]")
    with open(sys.argv[1]) as f:
        profile = json.load(f)
    errno_ret = profile.get("defaultErrnoRet", errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=action(profile["defaultAction"], errno_ret))
    for arch in profile.get("architectures", []):
        if not rules.exist_arch(ARCHES[arch]):
            rules.add_arch(ARCHES[arch])
    for rule in profile.get("syscalls", []):
        for name in rule["names"]:
            try:
                rules.add_rule(action(rule["action"], rule.get("errnoRet", errno_ret)), name)
            except (RuntimeError, ValueError) as err:
                # As runc does: a name no architecture of the filter knows is left out.
                print(f"seccomp-exec: {name}: {err}", file=sys.stderr)
    rules.load()
    os.execv(sys.argv[2], sys.argv[2:])


main()
