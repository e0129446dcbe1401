import Glibc
import Policy
import PolicyFile

/// The binding policy of a run (issue 11): the policy file, the command
/// line's prefixes, and whether the program itself is at home.
extension Launch {
    /// The defaults, the policy file's rules and the command line's
    /// prefixes; exits 125 on a bad file or prefix, before anything runs.
    static func routingPolicy(file: String?, forward: [String], local: [String], networkAtHome: Bool = false) -> RoutingPolicy {
        for p in forward + local where !p.hasPrefix("/") {
            fail(Status.usage, "--forward/--local take absolute prefixes, not \(p)")
        }
        var rules: [Rule] = []
        if let file {
            do { rules = try PolicyFile.load(path: file) } catch { fail(Status.usage, "policy: \(error)") }
        }
        return RoutingPolicy(rules: rules, forward: forward, local: local, networkAtHome: networkAtHome)
    }

    /// Whether the program `name` is to be found at home: the policy
    /// forwards or copies its path, or, for a bare name, a PATH directory
    /// that comes before any local one holding it.
    static func isAtHome(_ name: String, environment: [String], policy: RoutingPolicy) -> Bool {
        func atHome(_ path: String) -> Bool {
            var cwd = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let found = cwd.withUnsafeMutableBytes { getcwd($0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) } != nil
            let base = found ? String(decoding: cwd.prefix { $0 != 0 }, as: UTF8.self) : "/"
            let binding = policy.explain(PathNormalizer.normalize(path, base: base)).binding
            return binding == .forward || binding == .copy
        }
        if name.contains("/") { return atHome(name) }
        let path = environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":", omittingEmptySubsequences: false).map({ $0.isEmpty ? "." : String($0) }) {
            if atHome(dir + "/" + name) { return true }
            var st = stat()
            if stat(dir + "/" + name, &st) == 0, st.st_mode & S_IFMT == S_IFREG { return false }
        }
        return false
    }

    /// A size in bytes, with an optional K, M or G (powers of 1024).
    static func size(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        guard let last = text.uppercased().last else { return nil }
        let scale = units[last] ?? 1
        guard let n = Int64(scale == 1 ? text : String(text.dropLast())), n > 0 else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : bytes
    }
}
