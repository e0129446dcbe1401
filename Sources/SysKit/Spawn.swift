import CShim
import Glibc

/// Building C argv/envp arrays that live for the duration of a call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    ptrs.append(nil)
    defer { for p in ptrs { free(p) } }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Why the tracee could not be started.
public struct SpawnFailure: Error {
    public var errno: Errno
    /// 1 no_new_privs, 2 seccomp, 3 passing the listener, 4 execve, 5 fork.
    public var stage: Int32
}

public enum Spawn {
    /// Starts `path` under `filter`, below a keeper; returns its pid, the
    /// listener and the keeper.
    public static func traced(path: String, argv: [String], env: [String], filter: SeccompFilter,
                              nofileSoft: Int64) throws(SpawnFailure) -> (pid_t, SeccompListener, Keeper) {
        let (pid, fd, keeper) = try spawn(path: path, argv: argv, env: env, filter: filter, nofileSoft: nofileSoft, ptrace: false)
        return (pid, SeccompListener(fd: fd), keeper)
    }

    /// As `traced` for the ptrace engine (`filter` built with `trace`): the
    /// child waits to be seized before its filter and execve; returns its
    /// pid, the stage socket for `PtraceTracer.start`, and the keeper.
    public static func forPtrace(path: String, argv: [String], env: [String], filter: SeccompFilter,
                                 nofileSoft: Int64) throws(SpawnFailure) -> (pid_t, CInt, Keeper) {
        try spawn(path: path, argv: argv, env: env, filter: filter, nofileSoft: nofileSoft, ptrace: true)
    }

    private static func spawn(path: String, argv: [String], env: [String], filter: SeccompFilter,
                              nofileSoft: Int64, ptrace: Bool) throws(SpawnFailure) -> (pid_t, CInt, Keeper) {
        var listener: CInt = -1
        var stage: CInt = 0
        var keeper: CInt = -1
        var keeperPid: pid_t = -1
        let pid: pid_t = withCStrings(argv) { av in
            withCStrings(env) { ev in
                withUnsafePointer(to: filter.raw) { fp in
                    path.withCString { cpath in
                        var req = cshim_spawn_request(path: cpath, argv: av, envp: ev, filter: fp, nofile_soft: nofileSoft,
                                                      ptrace_mode: ptrace ? 1 : 0)
                        return cshim_spawn_traced(&req, &listener, &stage, &keeper, &keeperPid)
                    }
                }
            }
        }
        if pid < 0 { throw SpawnFailure(errno: lastErrno(), stage: stage) }
        return (pid, listener, Keeper(socket: keeper, pid: keeperPid))
    }

    /// posix_spawn of `path` with `keep[i]` as fd 3+i in the child.
    public static func plain(path: String, argv: [String], env: [String], keep: [CInt]) throws(Errno) -> pid_t {
        let pid: pid_t = withCStrings(argv) { av in
            withCStrings(env) { ev in
                keep.withUnsafeBufferPointer { k in
                    cshim_spawn_plain(path, av, ev, k.baseAddress, k.count)
                }
            }
        }
        if pid < 0 { throw lastErrno() }
        return pid
    }

    /// This process's environment as KEY=VALUE strings.
    public static var environment: [String] {
        var out: [String] = []
        var p = environ
        while let s = p.pointee { out.append(String(cString: s)); p += 1 }
        return out
    }
}

/// The result of checking a program file before starting it.
public enum ProgramCheck {
    case ok
    case script
    case wrongClass
    case wrongMachine(Int32)
    case notELF

    /// Checks the ELF class and machine of the file at `path`.
    public static func check(path: String) throws(Errno) -> ProgramCheck {
        let fd = try sys { cshim_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0) }
        defer { Glibc.close(fd) }
        var machine: Int32 = 0
        let rc = try sys { cshim_elf_check(fd, &machine) }
        switch rc {
        case CSHIM_ELF_OK: return .ok
        case CSHIM_ELF_SCRIPT: return .script
        case CSHIM_ELF_WRONG_CLASS: return .wrongClass
        case CSHIM_ELF_WRONG_MACHINE: return .wrongMachine(machine)
        default: return .notELF
        }
    }
}
