import Testing
@testable import Policy
@testable import PolicyFile

@Suite struct PolicyFileTests {
    func parse(_ text: String) throws(PolicyFileError) -> [Rule] { try PolicyFile.parse(text, name: "p.toml") }

    @Test func readsRulesWithOriginsAndReasons() throws {
        let rules = try parse("""
            # a comment
            [[rule]]
            prefix = "/srv/data/"
            strategy = "local"

            [[rule]]
              prefix = "/srv/data/secret"
              strategy = "deny"
              errno = "EROFS"
              reason = "kept off"
            """)
        #expect(rules.map(\.prefix) == ["/srv/data", "/srv/data/secret"])
        #expect(rules.map(\.binding) == [.local, .deny])
        #expect(rules[1].errno == 30 && rules[1].reason == "kept off")
        #expect(rules.map(\.origin) == ["p.toml:2", "p.toml:6"])
        let p = RoutingPolicy(rules: rules)
        #expect(p.hasDeny)
        #expect(p.explain("/srv/data/secret/x").verdict == Verdict(binding: .deny, errno: 30))
        #expect(p.explain("/srv/data/x").binding == .local)
    }

    @Test func positionsOfErrors() {
        let cases: [(String, Int, Int)] = [
            ("[[rule]]\nprefix = \"/x\"\nstrategy = \"nope\"\n", 3, 12),
            ("[[rule]]\nprefix = \"/x\"\nstrategy = \"deny\"\n  errno = \"EXXX\"\n", 4, 11),
            ("[[rule]]\nprefix = 'rel'\nstrategy = \"local\"\n", 2, 10),
            ("[[rule]]\nprefix = \"/x\"\nstrategy = \"local\"\n\"extra\" = 1\n", 4, 1),
            ("[[rule]]\nprefix = \"/x\"\nstrategy = [1]\n", 3, 12),
            ("\n\n[[rule]\n", 3, 8),
        ]
        for (text, line, column) in cases {
            do {
                _ = try parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == line && error.column == column, "\(text): \(error)")
            }
        }
    }

    @Test func renderedPolicyReadsBackToTheSameRules() throws {
        let first = RoutingPolicy(rules: try parse("""
            [[rule]]
            prefix = "/a b/\\"q\\""
            strategy = "copy"
            reason = "tab\\there"
            [[rule]]
            prefix = "/lib*"
            strategy = "forward"
            """), forward: ["/opt"], local: ["/srv"])
        let again = RoutingPolicy(rules: try parse(PolicyFile.render(first)))
        let key = { (p: RoutingPolicy) in p.rules.map { "\($0.prefix) \($0.strategyText) \($0.reason ?? "")" } }
        #expect(key(again) == key(first))
        #expect(again.explain("/lib64/x").binding == .forward)
    }

    @Test func errnoNamesRoundTrip() {
        for (name, value) in ErrnoName.all where name != "ENOTSUP" {
            #expect(ErrnoName.value(of: name) == value)
            #expect(ErrnoName.name(of: value) == name)
        }
        #expect(ErrnoName.value(of: "eacces") == nil)
    }
}
