import Policy

extension PolicyFile {
    /// The effective policy as a policy file: every rule in force, the
    /// defaults included, each after a comment saying where it came from.
    /// `--policy` reads it back to the same rules.
    public static func render(_ policy: RoutingPolicy) -> String {
        var out = """
            # Tether binding policy (wrap-and-run --print-policy); wrap-and-run --policy FILE reads this form.
            # Every path at or beneath a rule's prefix takes the rule's strategy; the longest prefix
            # decides, and a last component ending in "*" matches any name with that stem.
            #   forward  global reference: the call runs at home, on home's file
            #   local    rebind by type: the call runs on the target's own file
            #   copy     bind by value: the file is fetched once into a local cache, then used locally
            #   deny     the call fails with the rule's errno
            # Rules given later (policy file, then --forward/--local) replace earlier ones of the same prefix.

            """
        for rule in policy.rules.sorted(by: { $0.prefix < $1.prefix }) {
            out += "\n# " + (rule.origin == "default" ? "default" : "from " + rule.origin) + "\n"
            out += "[[rule]]\n"
            out += "prefix = " + quoted(rule.prefix) + "\n"
            out += "strategy = " + quoted(rule.binding.rawValue) + "\n"
            if rule.binding == .deny { out += "errno = " + quoted(ErrnoName.name(of: rule.errno)) + "\n" }
            if let reason = rule.reason { out += "reason = " + quoted(reason) + "\n" }
        }
        return out
    }

    /// A TOML basic string.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    let hex = String(u.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
