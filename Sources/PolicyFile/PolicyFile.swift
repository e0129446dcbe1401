import Glibc
import Policy
import TOMLKit

/// A policy file that cannot be used, with where in it the problem is.
public struct PolicyFileError: Error, CustomStringConvertible {
    public let file: String
    /// 1-based; 0 when the file could not be read at all.
    public let line: Int
    public let column: Int
    public let message: String

    public var description: String {
        line == 0 ? "\(file): \(message)" : "\(file):\(line):\(column): \(message)"
    }
}

/// The policy file (`wrap-and-run --policy FILE`): TOML with one `[[rule]]`
/// table per rule,
///
///     [[rule]]
///     prefix = "/srv/secrets"
///     strategy = "deny"
///     errno = "EACCES"
///     reason = "never on the target"
///
/// read into `Rule`s (on top of the defaults) and written back out by
/// `render`, which `--print-policy` prints.
public enum PolicyFile {
    /// The keys a rule may have.
    static let ruleKeys = ["prefix", "strategy", "errno", "reason"]

    /// Reads and checks the policy file at `path`.
    public static func load(path: String) throws(PolicyFileError) -> [Rule] {
        guard let text = readWhole(path) else {
            throw PolicyFileError(file: path, line: 0, column: 0,
                                  message: "cannot read: " + String(cString: strerror(errno)))
        }
        return try parse(text, name: path)
    }

    /// Checks the TOML `text` (named `name` in messages) and returns its rules.
    public static func parse(_ text: String, name: String) throws(PolicyFileError) -> [Rule] {
        let where_ = SourceLocator(text)
        func failure(_ at: (line: Int, column: Int), _ message: String) -> PolicyFileError {
            PolicyFileError(file: name, line: at.line, column: at.column, message: message)
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch {
            if let e = error as? TOMLParseError {
                throw failure((e.source.begin.line, e.source.begin.column), e.description)
            }
            throw failure((1, 1), "not TOML")
        }
        for key in table.keys where key != "rule" {
            throw failure(where_.key(key, inRule: nil), "unknown key \"\(key)\" (a policy file holds [[rule]] tables only)")
        }
        guard let value = table["rule"] else { return [] }
        guard let array = value.array else {
            throw failure(where_.key("rule", inRule: nil), "\"rule\" must be an array of tables: write each rule as [[rule]]")
        }
        var rules: [Rule] = []
        for (index, element) in array.enumerated() {
            guard let r = element.table else {
                throw failure(where_.rule(index), "rule \(index + 1) is not a table")
            }
            for key in r.keys where !ruleKeys.contains(key) {
                throw failure(where_.key(key, inRule: index),
                              "unknown key \"\(key)\" in a rule (known: \(ruleKeys.joined(separator: ", ")))")
            }
            func string(_ key: String) throws(PolicyFileError) -> String? {
                guard let v = r[key] else { return nil }
                guard let s = v.string else { throw failure(where_.value(key, inRule: index), "\"\(key)\" must be a string") }
                return s
            }
            guard let prefix = try string("prefix") else {
                throw failure(where_.rule(index), "rule \(index + 1) has no \"prefix\"")
            }
            guard prefix.hasPrefix("/") else {
                throw failure(where_.value("prefix", inRule: index),
                              "prefix \"\(prefix)\" is relative: a rule's prefix is an absolute path")
            }
            let body = prefix.dropLast(prefix.hasSuffix("*") ? 1 : 0)
            guard !body.contains("*"), !prefix.utf8.contains(0) else {
                throw failure(where_.value("prefix", inRule: index),
                              "prefix \"\(prefix)\": \"*\" may only end the last component")
            }
            guard let strategyName = try string("strategy") else {
                throw failure(where_.rule(index), "rule \(index + 1) (\(prefix)) has no \"strategy\"")
            }
            guard let binding = Binding(rawValue: strategyName) else {
                throw failure(where_.value("strategy", inRule: index),
                              "unknown strategy \"\(strategyName)\" (forward, local, copy or deny)")
            }
            var errnoValue: Int32 = 0
            if let errnoName = try string("errno") {
                guard binding == .deny else {
                    throw failure(where_.key("errno", inRule: index), "\"errno\" belongs to a deny rule only")
                }
                guard let v = ErrnoName.value(of: errnoName) else {
                    throw failure(where_.value("errno", inRule: index),
                                  "unknown errno name \"\(errnoName)\" (for example EACCES, EPERM, ENOENT, EROFS)")
                }
                errnoValue = v
            } else if binding == .deny {
                throw failure(where_.rule(index), "a deny rule names its errno, e.g. errno = \"EACCES\"")
            }
            let line = where_.rule(index).line
            rules.append(Rule(prefix: RoutingPolicy.clean(prefix), binding: binding, errno: errnoValue,
                              origin: "\(name):\(line)", reason: try string("reason")))
        }
        return rules
    }

    /// The whole of a file, or nil with errno set.
    private static func readWhole(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
