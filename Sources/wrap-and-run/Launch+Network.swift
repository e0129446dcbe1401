import Policy

/// The network rules of a run (issue 10): where sockets go by destination.
extension Launch {
    /// The network rules, or a usage error naming the one that is no CIDR[:PORTS].
    static func networkPolicy(allLocal: Bool, forward: [String], local: [String]) -> NetworkPolicy {
        var rules: [NetRule] = []
        for (list, binding, origin) in [(forward, Binding.forward, "--forward-net"), (local, .local, "--local-net")] {
            for text in list {
                guard let r = NetRule(text, binding: binding, origin: origin) else {
                    fail(Status.usage, "\(origin) takes CIDR[:PORTS] (10.0.0.0/8, 192.0.2.1:443, [fd00::]/8:8000-8100), not \(text)")
                }
                rules.append(r)
            }
        }
        return NetworkPolicy(defaultBinding: allLocal ? .local : .forward, rules: rules)
    }

    /// `--local-net CIDR` becomes `--local-net-rule CIDR`, so both parsers
    /// see one meaning per name: a bare `--local-net` is the flag. A word
    /// after it that is an address, or starts as one (a digit, "[" or ":"),
    /// is a rule (checked with the others); any other word is the program.
    static func separateNetRules(_ args: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < args.count {
            if args[i] == "--" { return out + args[i...] }
            if args[i] == "--local-net", i + 1 < args.count, isRule(args[i + 1]) {
                out += ["--local-net-rule", args[i + 1]]
                i += 2
                continue
            }
            out.append(args[i])
            i += 1
        }
        return out
    }

    private static func isRule(_ word: String) -> Bool {
        if NetRule(word, binding: .local, origin: "") != nil { return true }
        guard let first = word.first else { return false }
        return first.isNumber || first == "[" || first == ":"
    }
}
