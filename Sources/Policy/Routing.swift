/// What happens to a call on a resource.
public enum Binding: String, Sendable {
    /// Executed at home; the state lives at home.
    case forward
    /// Executed on the target with the target's own resource.
    case local
}

/// One binding rule: every path at or beneath `prefix` takes `binding`.
/// A last component ending in `*` matches any component with that stem
/// (`/lib*` covers `/lib`, `/lib64`, `/libx32`).
public struct Rule: Sendable, CustomStringConvertible {
    public var prefix: String
    public var binding: Binding
    /// Where the rule came from: "default", "--forward", "--local".
    public var origin: String

    let components: [[UInt8]]
    let stemLast: Bool

    public init(prefix: String, binding: Binding, origin: String) {
        self.prefix = prefix
        self.binding = binding
        self.origin = origin
        var comps = prefix.utf8.split(separator: UInt8(ascii: "/")).map { Array($0) }
        var stem = false
        if let last = comps.last, last.last == UInt8(ascii: "*") {
            comps[comps.count - 1] = Array(last.dropLast())
            stem = true
        }
        components = comps
        stemLast = stem
    }

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

    public var description: String {
        let b = binding.rawValue
        return b + String(repeating: " ", count: max(1, 9 - b.count)) + prefix + "  (" + origin + ")"
    }
}

/// The binding rules for paths, decided by longest prefix.
public struct RoutingPolicy: Sendable, CustomStringConvertible {
    /// Paths the target's own system serves: its loader, libraries,
    /// configuration, devices and kernel views.
    public static let defaultLocal = ["/proc", "/sys", "/dev", "/usr", "/lib*", "/bin", "/sbin", "/etc", "/run"]

    /// The name service's files: read where the network is, so names
    /// resolve as they would there (at home unless `--local-net`).
    public static let nameService = ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]

    /// Rules, most specific first.
    public private(set) var rules: [Rule]

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
        let binding: Binding
    }

    /// The default policy (everything forwarded but `defaultLocal`; with
    /// `networkAtHome`, the `nameService` files forwarded too unless a
    /// `local` prefix covers them), with
    /// `forward` and `local` prefixes overriding it by longest prefix.
    public init(forward: [String] = [], local: [String] = [], networkAtHome: Bool = false) {
        var rules = [Rule(prefix: "/", binding: .forward, origin: "default")]
        rules += Self.defaultLocal.map { Rule(prefix: $0, binding: .local, origin: "default") }
        if networkAtHome {
            // A default: a --local prefix over the file (--local / or /etc) keeps it local.
            let kept = local.map { Rule(prefix: Self.clean($0), binding: .local, origin: "--local") }
            for file in Self.nameService where !kept.contains(where: { r in Array(file.utf8).withUnsafeBytes { r.matches($0) } }) {
                rules.append(Rule(prefix: file, binding: .forward, origin: "network at home"))
            }
        }
        rules += forward.map { Rule(prefix: Self.clean($0), binding: .forward, origin: "--forward") }
        rules += local.map { Rule(prefix: Self.clean($0), binding: .local, origin: "--local") }
        // Later rules of equal rank override earlier ones (command line beats default).
        self.rules = rules.enumerated().sorted { a, b in
            a.element.rank != b.element.rank ? a.element.rank > b.element.rank : a.offset > b.offset
        }.map(\.element)
        var text: [UInt8] = []
        matchers = self.rules.map { r in
            let start = text.count
            for c in r.components { text.append(UInt8(ascii: "/")); text += c }
            return Matcher(start: start, count: text.count - start, stem: r.stemLast, binding: r.binding)
        }
        prefixText = text
    }

    private static func clean(_ prefix: String) -> String {
        let normalized = PathNormalizer.normalize(prefix)
        return normalized
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

    /// The binding of a normalized absolute path. Allocation-free, and
    /// free of reference counting.
    @inline(__always)
    public func decide(_ path: UnsafeRawBufferPointer) -> Binding {
        matchers.withUnsafeBufferPointer { $0[ruleIndex(for: path)].binding }
    }

    /// Which rule decides `path` (normalized first), for `--explain`.
    public func explain(_ path: String) -> Rule {
        let normalized = PathNormalizer.normalize(path)
        return Array(normalized.utf8).withUnsafeBytes { rule(for: $0) }
    }

    public var description: String { rules.map(\.description).joined(separator: "\n") }
}
