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

    /// Rules, most specific first.
    public private(set) var rules: [Rule]

    /// The default policy (everything forwarded but `defaultLocal`), with
    /// `forward` and `local` prefixes overriding it by longest prefix.
    public init(forward: [String] = [], local: [String] = []) {
        var rules = [Rule(prefix: "/", binding: .forward, origin: "default")]
        rules += Self.defaultLocal.map { Rule(prefix: $0, binding: .local, origin: "default") }
        rules += forward.map { Rule(prefix: Self.clean($0), binding: .forward, origin: "--forward") }
        rules += local.map { Rule(prefix: Self.clean($0), binding: .local, origin: "--local") }
        // Later rules of equal rank override earlier ones (command line beats default).
        self.rules = rules.enumerated().sorted { a, b in
            a.element.rank != b.element.rank ? a.element.rank > b.element.rank : a.offset > b.offset
        }.map(\.element)
    }

    private static func clean(_ prefix: String) -> String {
        let normalized = PathNormalizer.normalize(prefix)
        return normalized
    }

    /// The rule deciding a normalized absolute path.
    public func rule(for path: UnsafeRawBufferPointer) -> Rule {
        for r in rules where r.matches(path) { return r }
        return rules[rules.count - 1]
    }

    /// The binding of a normalized absolute path. Allocation-free.
    @inline(__always)
    public func decide(_ path: UnsafeRawBufferPointer) -> Binding { rule(for: path).binding }

    /// Which rule decides `path` (normalized first), for `--explain`.
    public func explain(_ path: String) -> Rule {
        let normalized = PathNormalizer.normalize(path)
        return Array(normalized.utf8).withUnsafeBytes { rule(for: $0) }
    }

    public var description: String { rules.map(\.description).joined(separator: "\n") }
}
