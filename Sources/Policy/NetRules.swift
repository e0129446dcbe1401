/// One network rule: addresses in `address`/`prefixLength` (and, if given,
/// ports in `ports`) take `binding`. IPv4 rules also match IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d`).
public struct NetRule: Sendable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), network order.
    let address: [UInt8]
    let prefixLength: Int
    let ports: ClosedRange<UInt16>?
    public let binding: Binding
    /// As written on the command line.
    public let text: String
    /// "--forward-net" or "--local-net".
    public let origin: String

    /// Parses `CIDR[:PORTS]` (`10.0.0.0/8`, `192.168.1.5:443`, `[fd00::]/8:8000-8100`,
    /// `::1`); nil if it is not one.
    public init?(_ text: String, binding: Binding, origin: String) {
        var rest = Substring(text)
        var ports: ClosedRange<UInt16>?
        var host: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
            var prefix: Substring = ""
            if rest.hasPrefix("/") {
                let end = rest.firstIndex(of: ":") ?? rest.endIndex
                prefix = rest[..<end]
                rest = rest[end...]
            }
            host += prefix
            if rest.hasPrefix(":") {
                guard let p = Self.portRange(rest.dropFirst()) else { return nil }
                ports = p
            } else if !rest.isEmpty { return nil }
        } else if rest.filter({ $0 == ":" }).count == 1 {
            let colon = rest.firstIndex(of: ":")!
            guard let p = Self.portRange(rest[rest.index(after: colon)...]) else { return nil }
            ports = p
            host = rest[..<colon]
        } else {
            host = rest
        }
        var length: Int?
        if let slash = host.firstIndex(of: "/") {
            guard let n = Int(host[host.index(after: slash)...]) else { return nil }
            length = n
            host = host[..<slash]
        }
        guard let bytes = Self.parseIPv4(host) ?? Self.parseIPv6(host) else { return nil }
        let bits = bytes.count * 8
        guard (length ?? bits) >= 0, (length ?? bits) <= bits else { return nil }
        address = bytes
        prefixLength = length ?? bits
        self.ports = ports
        self.binding = binding
        self.text = text
        self.origin = origin
    }

    /// Specificity: longer prefixes first; a rule with ports before one without.
    var rank: Int { prefixLength * 2 + (ports == nil ? 0 : 1) }

    func matches(_ ip: UnsafeRawBufferPointer, port: UInt16) -> Bool {
        guard ip.count == address.count else { return false }
        if let ports, !ports.contains(port) { return false }
        var bits = prefixLength, i = 0
        while bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
            if ip[i] & mask != address[i] & mask { return false }
            bits -= 8
            i += 1
        }
        return true
    }

    public var description: String {
        let b = binding.rawValue
        return b + String(repeating: " ", count: max(1, 9 - b.count)) + text + "  (" + origin + ")"
    }

    static func portRange(_ s: Substring) -> ClosedRange<UInt16>? {
        if let dash = s.firstIndex(of: "-") {
            guard let lo = UInt16(s[..<dash]), let hi = UInt16(s[s.index(after: dash)...]), lo <= hi else { return nil }
            return lo...hi
        }
        guard let p = UInt16(s) else { return nil }
        return p...p
    }

    static func parseIPv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }

    static func parseIPv6(_ s: Substring) -> [UInt8]? {
        guard s.contains(":") else { return nil }
        var halves = [String(s)]
        if let gap = s.firstRange(of: "::") {
            halves = [String(s[..<gap.lowerBound]), String(s[gap.upperBound...])]
            if halves[1].contains("::") { return nil }
        }
        func groups(_ h: String) -> [UInt8]? {
            if h.isEmpty { return [] }
            var out: [UInt8] = []
            let parts = h.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if i == parts.count - 1, p.contains("."), let v4 = parseIPv4(p) {
                    out += v4
                    continue
                }
                guard !p.isEmpty, p.count <= 4, let v = UInt16(p, radix: 16) else { return nil }
                out += [UInt8(v >> 8), UInt8(v & 0xff)]
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

/// Where sockets go, by destination: `--forward-net` and `--local-net`
/// rules, longest prefix first; an address no rule matches takes the
/// default (home, or the target with a bare `--local-net`).
public struct NetworkPolicy: Sendable, CustomStringConvertible {
    public let defaultBinding: Binding
    /// Most specific first; of equal rank, the later on the command line first.
    public let rules: [NetRule]

    public init(defaultBinding: Binding = .forward, rules: [NetRule] = []) {
        self.defaultBinding = defaultBinding
        self.rules = rules.enumerated().sorted { a, b in
            a.element.rank != b.element.rank ? a.element.rank > b.element.rank : a.offset > b.offset
        }.map(\.element)
    }

    /// The rule deciding `ip` (4 or 16 bytes) and `port`, nil for the
    /// default. An IPv4-mapped IPv6 address is decided as its IPv4 one.
    public func rule(ip: UnsafeRawBufferPointer, port: UInt16) -> NetRule? {
        if ip.count == 16, ip[0..<10].allSatisfy({ $0 == 0 }), ip[10] == 0xff, ip[11] == 0xff {
            return rule(ip: UnsafeRawBufferPointer(rebasing: ip[12..<16]), port: port)
        }
        return rules.first { $0.matches(ip, port: port) }
    }

    /// The binding of a socket address in the kernel's layout (AF_INET or
    /// AF_INET6); any other family takes the default. Allocation-free.
    public func decide(sockaddr a: UnsafeRawBufferPointer) -> Binding {
        if rules.isEmpty || a.count < 2 { return defaultBinding }
        let family = UInt16(a[0]) | UInt16(a[1]) << 8
        let port = a.count >= 4 ? UInt16(a[2]) << 8 | UInt16(a[3]) : 0
        if family == 2, a.count >= 8 {
            return rule(ip: UnsafeRawBufferPointer(rebasing: a[4..<8]), port: port)?.binding ?? defaultBinding
        }
        if family == 10, a.count >= 24 {
            return rule(ip: UnsafeRawBufferPointer(rebasing: a[8..<24]), port: port)?.binding ?? defaultBinding
        }
        return defaultBinding
    }

    /// For `--explain`: the binding of `text` (`ADDRESS`, `ADDRESS:PORT`,
    /// `[IPV6]:PORT`) and what decided it; nil if `text` is no address.
    public func explain(_ text: String) -> (Binding, String)? {
        guard let probe = NetRule(text, binding: .forward, origin: ""), probe.prefixLength == probe.address.count * 8 else {
            return nil
        }
        let port = probe.ports?.lowerBound ?? 0
        let found = probe.address.withUnsafeBytes { rule(ip: $0, port: port) }
        if let found { return (found.binding, "rule \(found.text) (\(found.origin))") }
        return (defaultBinding, defaultBinding == .forward ? "the default (the network is at home)" : "--local-net")
    }

    public var description: String {
        (rules.map(\.description) + ["\(defaultBinding.rawValue)  every other address  (default)"]).joined(separator: "\n")
    }
}
