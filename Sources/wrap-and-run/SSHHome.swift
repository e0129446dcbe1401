import Glibc

/// `--home ssh://[user@]host[:port]`: the home is `homestub --stdio` that
/// ssh runs on that host, as `ssh -T [-p port] [user@]host homestub
/// --stdio`, with the user's own ssh configuration (keys, agent, known
/// hosts, ProxyJump). ssh has authenticated the user and protects the
/// stream; `--key-file` adds Tether's own handshake on top if given.
struct SSHHome: Equatable {
    static let scheme = "ssh://"

    var user: String?
    /// A name or address; an IPv6 address without its brackets.
    var host: String
    var port: UInt16?

    /// Nil when `text` does not start with `ssh://`; the reason when it
    /// does but is not `ssh://[user@]host[:port]` (no path: the remote
    /// program is `--remote-homestub`).
    static func parse(_ text: String) -> Result<SSHHome, SSHHomeError>? {
        guard text.hasPrefix(scheme) else { return nil }
        var rest = Substring(text.dropFirst(scheme.count))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if rest.contains("/") {
            return .failure(SSHHomeError("\(text): an ssh:// home has no path (use --remote-homestub PATH for where homestub is)"))
        }
        var user: String?
        if let at = rest.lastIndex(of: "@") {
            user = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
        }
        var host = rest, port: UInt16?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return .failure(SSHHomeError("\(text): unclosed [ in the host")) }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = UInt16(after.dropFirst()), p > 0 else {
                    return .failure(SSHHomeError("\(text): the port must be a number from 1 to 65535"))
                }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = UInt16(rest[rest.index(after: colon)...]), p > 0 else {
                return .failure(SSHHomeError("\(text): the port must be a number from 1 to 65535"))
            }
            port = p
        }
        // A leading '-' would reach ssh as an option.
        if let user, user.isEmpty || user.hasPrefix("-") || !Self.plain(user) {
            return .failure(SSHHomeError("\(text): not a user name: '\(user)'"))
        }
        guard !host.isEmpty, !host.hasPrefix("-"), Self.plain(host) else {
            return .failure(SSHHomeError("\(text): not a host name: '\(host)'"))
        }
        return .success(SSHHome(user: user, host: String(host), port: port))
    }

    /// No white space or control characters (ssh would split or refuse them).
    private static func plain(_ s: Substring) -> Bool { !s.unicodeScalars.contains { $0.value <= 0x20 || $0.value == 0x7f } }
    private static func plain(_ s: String) -> Bool { plain(Substring(s)) }

    /// The shell command that reaches this home: `ssh` (or `sshCommand`,
    /// which the shell splits, as git does with GIT_SSH_COMMAND) with `-T`,
    /// the port, the destination and the remote command, which ssh hands to
    /// the remote user's shell: `homestub --stdio`, or `remoteHomestub`
    /// quoted for that shell.
    func command(sshCommand: String?, remoteHomestub: String) -> String {
        login(sshCommand: sshCommand, options: ["-T"], remote: Self.quote(remoteHomestub) + " --stdio")
    }

    /// The shell command of the second login `--stdio home` needs (the
    /// first has no terminal): the same ssh and destination with `-tt` (a
    /// pty even when this side has no terminal) and only errors logged
    /// (no "Connection closed" line at the end), running `homestub
    /// --hand-terminal DIR` with the secret in its environment. The secret
    /// shows in this ssh's arguments and, for a moment, in `env`'s at home:
    /// only this user (or root), who could read the session anyway, can
    /// reach the private DIR it opens, and it serves once.
    func terminalCommand(sshCommand: String?, remoteHomestub: String, directory: String, secret: String) -> String {
        login(sshCommand: sshCommand, options: ["-tt", "-o", "LogLevel=ERROR"],
              remote: "env TETHER_TERMINAL_SECRET=\(secret) \(Self.quote(remoteHomestub)) --hand-terminal \(Self.quote(directory))")
    }

    private func login(sshCommand: String?, options: [String], remote: String) -> String {
        var words = [sshCommand.flatMap { $0.isEmpty ? nil : $0 } ?? "ssh"] + options
        if let port { words += ["-p", String(port)] }
        words.append(Self.quote(user.map { "\($0)@\(host)" } ?? host))
        words.append(Self.quote(remote))
        return words.joined(separator: " ")
    }

    /// `s` as one word of a POSIX shell: as it is when it has only safe
    /// characters, otherwise in single quotes.
    static func quote(_ s: String) -> String {
        let safe = !s.isEmpty && s.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || "@%+=:,./_-".unicodeScalars.contains($0)
        }
        return safe ? s : "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}

/// Why an ssh:// home address is unusable (a usage error).
struct SSHHomeError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
