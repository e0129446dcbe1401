import Glibc
import Policy
import SysKit

/// Checks on the program and its standard streams before it starts.
extension Launch {
    /// PATH search as execvp does it; checks the ELF class and machine.
    func resolveProgram(_ name: String, environment: [String]) -> String {
        var candidates: [String]
        if name.contains("/") {
            candidates = [name]
        } else {
            let path = environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
            candidates = path.split(separator: ":", omittingEmptySubsequences: false).map { ($0.isEmpty ? "." : String($0)) + "/" + name }
        }
        var sawNoPermission = false
        for candidate in candidates {
            var st = stat()
            guard stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            guard access(candidate, X_OK) == 0 else { sawNoPermission = true; continue }
            checkBinary(candidate)
            // Absolute: the program may start in another directory (--cwd).
            if candidate.hasPrefix("/") { return candidate }
            guard let here = getcwd(nil, 0) else { return candidate }
            defer { free(here) }
            return String(cString: here) + "/" + candidate
        }
        if sawNoPermission { fail(Status.cannotExecute, "\(name): permission denied") }
        fail(Status.notFound, "\(name): command not found")
    }

    func checkBinary(_ path: String) {
        let check: ProgramCheck
        do { check = try ProgramCheck.check(path: path) } catch {
            fail(Status.cannotExecute, "\(path): cannot read: \(String(cString: strerror(error.rawValue)))")
        }
        switch check {
        case .ok, .script: return
        case .wrongClass: fail(Status.cannotExecute, "\(path): 32-bit ELF executables are not supported (x86_64 64-bit only)")
        case .wrongMachine(let m): fail(Status.cannotExecute, "\(path): ELF for machine \(machineName(m)), not x86_64")
        case .notELF: fail(Status.cannotExecute, "\(path): not an ELF executable or #! script")
        }
    }

    private func machineName(_ m: Int32) -> String {
        switch m {
        case 3: return "i386 (EM_386)"
        case 40: return "ARM (EM_ARM)"
        case 183: return "aarch64 (EM_AARCH64)"
        case 243: return "RISC-V (EM_RISCV)"
        default: return "EM \(m)"
        }
    }

    /// With `--stdio home` and an ssh:// home (no `--home-command`): the
    /// second login that hands the home's terminal over (`TerminalLogin`);
    /// nil for other homes, whose session's own terminal serves.
    func terminalLogin() -> (@Sendable (String, String) -> String)? {
        guard let target = Self.sshTerminalHome(home: home, homeCommand: homeCommand) else { return nil }
        let ssh = getenv("TETHER_SSH_COMMAND").map { String(cString: $0) }, remote = remoteHomestub
        return { directory, secret in
            target.terminalCommand(sshCommand: ssh, remoteHomestub: remote, directory: directory, secret: secret)
        }
    }

    /// The ssh:// home whose terminal a second login hands over, if the home is one.
    static func sshTerminalHome(home: String, homeCommand: String?) -> SSHHome? {
        guard homeCommand == nil, case .success(let target)? = SSHHome.parse(home) else { return nil }
        return target
    }

    /// The `--forward` prefixes, with /dev/pts for `--stdio home` on an
    /// ssh:// home: the program's terminal is a pty there, so its name
    /// (`ttyname`, `tty`) is looked up at home. Not when --forward or
    /// --local names /dev/pts itself.
    static func forwarded(_ prefixes: [String], local: [String], stdio: String, home: String, homeCommand: String?) -> [String] {
        guard stdio == "home", sshTerminalHome(home: home, homeCommand: homeCommand) != nil,
              !(prefixes + local).contains(where: { RoutingPolicy.clean($0) == "/dev/pts" }) else { return prefixes }
        return prefixes + ["/dev/pts"]
    }

    /// `--stdio home` (the home's terminal) or `local` (wrap-and-run's own).
    var stdioAtHome: Bool {
        switch stdio {
        case "home": return true
        case "local": return false
        default: fail(Status.usage, "--stdio takes local or home, not \(stdio)")
        }
    }
}
