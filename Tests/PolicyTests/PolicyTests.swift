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
            #expect(bytes.withUnsafeBytes { p.decide($0) } == rule.binding, "\(path)")
            #expect(bytes.withUnsafeBytes { p.rule(for: $0).prefix } == rule.prefix, "\(path)")
        }
    }
}
