import Testing
@testable import Policy

@Suite struct PathNormalizerTests {
    @Test func joinsAndCleans() {
        #expect(PathNormalizer.normalize("a/b", base: "/x/y") == "/x/y/a/b")
        #expect(PathNormalizer.normalize("/a//b/./c/") == "/a/b/c")
        #expect(PathNormalizer.normalize("../../..", base: "/x/y") == "/")
        #expect(PathNormalizer.normalize("../usr/bin", base: "/home") == "/usr/bin")
        #expect(PathNormalizer.normalize("", base: "/srv/data") == "/srv/data")
        #expect(PathNormalizer.normalize("/") == "/")
        #expect(PathNormalizer.normalize("a/../../b", base: "/") == "/b")
    }

    @Test func climbsOnlyWithADotDotComponent() {
        for (path, climbs) in [("..", true), ("a/../b", true), ("../x", true), ("a/..", true), ("", false), ("a", false),
                               ("...", false), ("a..b/c", false), ("..a/b", false), ("./x", false), ("a//..", true)] {
            #expect(Array(path.utf8).withUnsafeBytes { PathNormalizer.climbs($0) } == climbs, "\(path)")
        }
    }

    @Test func refusesTooSmallBuffer() {
        let p = Array("/abcdef".utf8), b = Array("/".utf8)
        var out = [UInt8](repeating: 0, count: 3)
        let n = p.withUnsafeBytes { pp in b.withUnsafeBytes { bb in
            out.withUnsafeMutableBytes { PathNormalizer.normalize(base: bb, path: pp, into: $0) } } }
        #expect(n == nil)
    }
}

@Suite struct RoutingTests {
    func decide(_ p: RoutingPolicy, _ path: String) -> Binding { p.explain(path).binding }

    @Test func defaultPolicy() {
        let p = RoutingPolicy()
        for local in ["/proc/self/maps", "/sys", "/dev/null", "/usr/bin/cat", "/lib/x86_64-linux-gnu/libc.so.6",
                      "/lib64/ld-linux-x86-64.so.2", "/libx32", "/bin/sh", "/sbin/init", "/etc/passwd", "/run/user"] {
            #expect(decide(p, local) == .local, "\(local)")
        }
        for fwd in ["/", "/home/u/data", "/tmp/x", "/root", "/usrlocal", "/procfoo", "/etcetera", "/srv"] {
            #expect(decide(p, fwd) == .forward, "\(fwd)")
        }
        // A lexical ".." leaves a local tree.
        #expect(decide(p, "/usr/../home/x") == .forward)
    }

    @Test func overridesByLongestPrefix() {
        let p = RoutingPolicy(forward: ["/etc/myapp"], local: ["/tmp", "/home/u/scratch/"])
        #expect(decide(p, "/etc/myapp/conf") == .forward)
        #expect(decide(p, "/etc/hosts") == .local)
        #expect(decide(p, "/tmp/a") == .local)
        #expect(decide(p, "/home/u/scratch/b") == .local)
        #expect(decide(p, "/home/u/data") == .forward)
        #expect(p.explain("/tmp/a").origin == "--local")
    }

    @Test func nameServiceFilesFollowTheNetwork() {
        let home = RoutingPolicy(networkAtHome: true)
        for file in RoutingPolicy.nameService {
            #expect(decide(home, file) == .forward, "\(file)")
            #expect(home.explain(file).origin == "network at home")
            #expect(decide(RoutingPolicy(), file) == .local, "\(file)")
        }
        #expect(decide(home, "/etc/hosts.allow") == .local)
        #expect(decide(home, "/etc/passwd") == .local)
        // A --local prefix over them keeps them local; one beside them does not.
        #expect(decide(RoutingPolicy(local: ["/"], networkAtHome: true), "/etc/hosts") == .local)
        #expect(decide(RoutingPolicy(local: ["/etc/hosts"], networkAtHome: true), "/etc/hosts") == .local)
        #expect(decide(RoutingPolicy(local: ["/etc/hosts"], networkAtHome: true), "/etc/resolv.conf") == .forward)
    }

    @Test func commandLineBeatsDefaultAtSamePrefix() {
        let p = RoutingPolicy(forward: ["/usr"])
        #expect(decide(p, "/usr/share/x") == .forward)
        #expect(p.explain("/usr").origin == "--forward")
    }

    @Test func decideAgreesWithTheRuleThatMatches() {
        let p = RoutingPolicy(forward: ["/etc/myapp", "/usr/lib*"], local: ["/tmp", "/home/u/scratch/", "/*x"])
        for path in ["/", "/lib", "/lib64/a", "/libfoo", "/li", "/usr", "/usr/lib", "/usr/lib64/z", "/usr/li", "/usrx",
                     "/etc/myapp", "/etc/myappx", "/etc/myapp/c", "/tmp", "/tmpx", "/x", "/ax/b", "/home/u/scratch",
                     "/home/u/scratchy", "/proc/self/fd/3"] {
            let bytes = Array(path.utf8)
            let rule = p.rules.first { r in bytes.withUnsafeBytes { r.matches($0) } }!
            #expect(bytes.withUnsafeBytes { p.decide($0) } == rule.verdict, "\(path)")
            #expect(bytes.withUnsafeBytes { p.rule(for: $0).prefix } == rule.prefix, "\(path)")
        }
    }
}

@Suite struct NetworkPolicyTests {
    func decide(_ p: NetworkPolicy, v4 ip: [UInt8], port: UInt16) -> Binding {
        var a = [UInt8](repeating: 0, count: 16)
        a[0] = 2
        a[2] = UInt8(port >> 8)
        a[3] = UInt8(port & 0xff)
        a.replaceSubrange(4..<8, with: ip)
        return a.withUnsafeBytes { p.decide(sockaddr: $0) }
    }

    func decide(_ p: NetworkPolicy, v6 ip: [UInt8], port: UInt16) -> Binding {
        var a = [UInt8](repeating: 0, count: 28)
        a[0] = 10
        a[2] = UInt8(port >> 8)
        a[3] = UInt8(port & 0xff)
        a.replaceSubrange(8..<24, with: ip)
        return a.withUnsafeBytes { p.decide(sockaddr: $0) }
    }

    @Test func parsesRules() {
        #expect(NetRule("10.0.0.0/8", binding: .local, origin: "--local-net") != nil)
        #expect(NetRule("192.168.1.5:443", binding: .local, origin: "")?.ports == 443...443)
        #expect(NetRule("[fd00::]/8:8000-8100", binding: .local, origin: "")?.ports == 8000...8100)
        #expect(NetRule("::1", binding: .local, origin: "")?.prefixLength == 128)
        #expect(NetRule("::ffff:1.2.3.4", binding: .local, origin: "")?.address == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4])
        for bad in ["10.0.0/8", "10.0.0.0/33", "1.2.3.4:99999", "1::2::3", "host.example", "1.2.3.4:5-4", "[::1"] {
            #expect(NetRule(bad, binding: .local, origin: "") == nil, "\(bad)")
        }
    }

    @Test func longestMatchWins() {
        let p = NetworkPolicy(rules: [NetRule("10.0.0.0/8", binding: .local, origin: "--local-net")!,
                                      NetRule("10.1.0.0/16", binding: .forward, origin: "--forward-net")!,
                                      NetRule("10.1.2.3:22", binding: .local, origin: "--local-net")!,
                                      NetRule("::1", binding: .local, origin: "--local-net")!])
        #expect(decide(p, v4: [10, 9, 9, 9], port: 80) == .local)
        #expect(decide(p, v4: [10, 1, 9, 9], port: 80) == .forward)
        #expect(decide(p, v4: [10, 1, 2, 3], port: 22) == .local)
        #expect(decide(p, v4: [10, 1, 2, 3], port: 23) == .forward)
        #expect(decide(p, v4: [8, 8, 8, 8], port: 53) == .forward)
        #expect(decide(p, v6: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 9, 9, 9], port: 80) == .local)
        #expect(decide(p, v6: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: 80) == .local)
        #expect(p.explain("10.1.2.3:22")?.1 == "rule 10.1.2.3:22 (--local-net)")
        #expect(p.explain("10.200.0.1")?.0 == .local)
        #expect(p.explain("/etc/hosts") == nil)
        let allLocal = NetworkPolicy(defaultBinding: .local, rules: [NetRule("192.0.2.0/24", binding: .forward, origin: "--forward-net")!])
        #expect(decide(allLocal, v4: [192, 0, 2, 7], port: 80) == .forward)
        #expect(decide(allLocal, v4: [192, 0, 3, 7], port: 80) == .local)
    }
}
