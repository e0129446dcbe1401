/// What happens to a call on a resource (the strategies of DESIGN.md's
/// binding taxonomy).
public enum Binding: String, Sendable, CaseIterable {
    /// Global reference: executed at home; the state lives at home.
    case forward
    /// Rebind by type: executed on the target with the target's own resource.
    case local
    /// Bind by value: fetched once from home into a local cache, then served
    /// locally.
    case copy
    /// Refused with the rule's errno.
    case deny
}

/// What routing decides for one path: the binding, and for `deny` the
/// errno the call fails with. A plain value, so deciding copies no rule.
public struct Verdict: Sendable, Equatable {
    public let binding: Binding
    /// The errno of a `deny` rule (0 for the other bindings).
    public let errno: Int32

    public init(binding: Binding, errno: Int32 = 0) {
        self.binding = binding
        self.errno = errno
    }
}

/// One binding rule: every path at or beneath `prefix` takes `binding`.
/// A last component ending in `*` matches any component with that stem
/// (`/lib*` covers `/lib`, `/lib64`, `/libx32`).
public struct Rule: Sendable, CustomStringConvertible {
    public var prefix: String
    public var binding: Binding
    /// The errno of a `deny` rule, 0 for the others.
    public var errno: Int32
    /// Where the rule came from: "default", "--forward", "--local", or
    /// "FILE:LINE" for a rule of a policy file.
    public var origin: String
    /// Why the rule is there (the defaults say; a policy file's rule may).
    public var reason: String?

    let components: [[UInt8]]
    let stemLast: Bool

    public init(prefix: String, binding: Binding, errno: Int32 = 0, origin: String, reason: String? = nil) {
        self.prefix = prefix
        self.binding = binding
        self.errno = binding == .deny ? errno : 0
        self.origin = origin
        self.reason = reason
        var comps = prefix.utf8.split(separator: UInt8(ascii: "/")).map { Array($0) }
        var stem = false
        if let last = comps.last, last.last == UInt8(ascii: "*") {
            comps[comps.count - 1] = Array(last.dropLast())
            stem = true
        }
        components = comps
        stemLast = stem
    }

    /// The rule's decision.
    public var verdict: Verdict { Verdict(binding: binding, errno: errno) }

    /// Specificity: longer prefixes win; an exact name beats a stem of the same depth.
    var rank: Int { components.count * 2 + (stemLast ? 0 : 1) }

    /// Whether the normalized absolute `path` is at or beneath this prefix.
    func matches(_ path: UnsafeRawBufferPointer) -> Bool {
        var i = 1  // past the leading "/"
        for (n, comp) in components.enumerated() {
            // Compare one component of `path` starting at i.
            var j = 0
            while j < comp.count {
                if i + j >= path.count || path[i + j] != comp[j] { return false }
                j += 1
            }
            let end = i + j
            let isLast = n == components.count - 1
            if isLast && stemLast {
                // Any remaining characters up to the next "/" are allowed.
                return true
            }
            if end < path.count && path[end] != UInt8(ascii: "/") { return false }
            i = end + 1
        }
        return true
    }

    /// The strategy as a policy file names it: "deny EACCES" for a deny rule.
    public var strategyText: String {
        binding == .deny ? "deny " + ErrnoName.name(of: errno) : binding.rawValue
    }

    public var description: String {
        let b = strategyText
        return b + String(repeating: " ", count: max(1, 9 - b.count)) + prefix + "  (" + origin + ")"
    }
}

/// The binding rules for paths, decided by longest prefix.
public struct RoutingPolicy: Sendable, CustomStringConvertible {
    /// The name service's files: read where the network is, so names
    /// resolve as they would there (at home unless `--local-net`).
    public static let nameService = ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]

    /// Rules, most specific first; one per prefix (the last given wins).
    public private(set) var rules: [Rule]

    /// Whether some rule denies: only then does routing look past the
    /// lexical path of a local call (symlinks into a denied tree).
    public let hasDeny: Bool

    /// The rules as `decide` reads them: each rule's prefix text ("/usr/lib";
    /// "" for "/") in one byte array, and per rule where its text lies, in
    /// the order of `rules`. Plain values only, so a decision copies no rule
    /// and touches no reference count (it runs on every intercepted path).
    private let prefixText: [UInt8]
    private let matchers: [Matcher]

    private struct Matcher: Sendable {
        let start: Int
        let count: Int
        /// The last component ends in "*": any text may follow the prefix.
        let stem: Bool
        let verdict: Verdict
    }

    /// The default policy (`DefaultPolicy.rules`), then the rules of a
    /// policy file, then the `forward` and `local` prefixes of the command
    /// line; longest prefix decides, and of rules with the same prefix the
    /// last one given. With `networkAtHome`, the `nameService` files are
    /// forwarded by default too, unless a `local` prefix covers them.
    public init(rules fileRules: [Rule] = [], forward: [String] = [], local: [String] = [], networkAtHome: Bool = false) {
        var given = DefaultPolicy.rules
        if networkAtHome {
            let kept = local.map { Rule(prefix: Self.clean($0), binding: .local, origin: "--local") }
            for file in Self.nameService where !kept.contains(where: { r in Array(file.utf8).withUnsafeBytes { r.matches($0) } }) {
                given.append(Rule(prefix: file, binding: .forward, origin: "network at home",
                                  reason: "the network is at home: names resolve as they would there"))
            }
        }
        given += fileRules
        given += forward.map { Rule(prefix: Self.clean($0), binding: .forward, origin: "--forward") }
        given += local.map { Rule(prefix: Self.clean($0), binding: .local, origin: "--local") }
        // One rule per prefix: the last one given.
        var byPrefix: [String: Int] = [:]
        var kept: [Rule] = []
        for rule in given {
            if let i = byPrefix[rule.prefix] { kept[i] = rule } else {
                byPrefix[rule.prefix] = kept.count
                kept.append(rule)
            }
        }
        self.rules = kept.enumerated().sorted { a, b in
            a.element.rank != b.element.rank ? a.element.rank > b.element.rank : a.offset > b.offset
        }.map(\.element)
        var text: [UInt8] = []
        matchers = self.rules.map { r in
            let start = text.count
            for c in r.components { text.append(UInt8(ascii: "/")); text += c }
            return Matcher(start: start, count: text.count - start, stem: r.stemLast, verdict: r.verdict)
        }
        prefixText = text
        hasDeny = self.rules.contains { $0.binding == .deny }
    }

    /// The normalized form of a prefix as rules keep it ("/a/b", a trailing
    /// "*" kept).
    public static func clean(_ prefix: String) -> String {
        PathNormalizer.normalize(prefix)
    }

    /// The index in `rules` of the rule deciding a normalized absolute path:
    /// the first whose prefix text starts the path and, unless it is a stem,
    /// ends there or at a "/" (the same test as `Rule.matches`).
    private func ruleIndex(for path: UnsafeRawBufferPointer) -> Int {
        prefixText.withUnsafeBytes { text in
            matchers.withUnsafeBufferPointer { all in
                for i in 0..<all.count {
                    let m = all[i]
                    guard path.count >= m.count else { continue }
                    var k = 0
                    while k < m.count && path[k] == text[m.start + k] { k += 1 }
                    guard k == m.count else { continue }
                    if m.stem || path.count == m.count || path[m.count] == UInt8(ascii: "/") { return i }
                }
                return all.count - 1
            }
        }
    }

    /// The rule deciding a normalized absolute path.
    public func rule(for path: UnsafeRawBufferPointer) -> Rule { rules[ruleIndex(for: path)] }

    /// The verdict on a normalized absolute path. Allocation-free, and free
    /// of reference counting.
    @inline(__always)
    public func decide(_ path: UnsafeRawBufferPointer) -> Verdict {
        matchers.withUnsafeBufferPointer { $0[ruleIndex(for: path)].verdict }
    }

    /// Which rule decides `path` (normalized first), for `--explain`.
    public func explain(_ path: String) -> Rule {
        let normalized = PathNormalizer.normalize(path)
        return Array(normalized.utf8).withUnsafeBytes { rule(for: $0) }
    }

    public var description: String { rules.map(\.description).joined(separator: "\n") }
}
