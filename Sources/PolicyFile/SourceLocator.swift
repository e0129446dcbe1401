/// Where rules and keys are in a policy file's text, for messages: TOMLKit
/// reports positions of syntax errors only, so a valid file's rules are
/// found again by their `[[rule]]` headers, in order, and a key by its
/// `key =` line within its rule. A form the scan does not see (an inline
/// array of tables) falls back to the rule's header, or the file's start.
struct SourceLocator {
    private let lines: [Substring]
    /// The line index (0-based) of each `[[rule]]` header, in order.
    private let headers: [Int]

    init(_ text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        self.lines = lines
        headers = lines.indices.filter { i in
            let t = Self.stripped(lines[i])
            guard t.hasPrefix("[["), let close = t.range(of: "]]") else { return false }
            return t[t.index(t.startIndex, offsetBy: 2)..<close.lowerBound]
                .trimmingSpaces() == "rule"
        }
    }

    /// The position of rule `index`'s header.
    func rule(_ index: Int) -> (line: Int, column: Int) {
        guard index < headers.count else { return (1, 1) }
        let line = lines[headers[index]]
        let column = line.prefix { $0 == " " || $0 == "\t" }.count + 1
        return (headers[index] + 1, column)
    }

    /// The position of `key` in rule `index` (nil: the top level).
    func key(_ key: String, inRule index: Int?) -> (line: Int, column: Int) {
        find(key, inRule: index)?.key ?? index.map(rule) ?? (1, 1)
    }

    /// The position of the value of `key` in rule `index`.
    func value(_ key: String, inRule index: Int?) -> (line: Int, column: Int) {
        find(key, inRule: index)?.value ?? index.map(rule) ?? (1, 1)
    }

    private func find(_ key: String, inRule index: Int?) -> (key: (Int, Int), value: (Int, Int))? {
        let range: Range<Int>
        if let index {
            guard index < headers.count else { return nil }
            let start = headers[index] + 1
            let end = lines[start...].firstIndex { Self.stripped($0).hasPrefix("[") } ?? lines.count
            range = start..<end
        } else {
            range = 0..<(lines.firstIndex { Self.stripped($0).hasPrefix("[") } ?? lines.count)
        }
        for i in range {
            let line = Array(lines[i].utf8)
            var k = 0
            while k < line.count && (line[k] == 0x20 || line[k] == 0x09) { k += 1 }
            let keyColumn = k + 1
            let quoted = k < line.count && (line[k] == 0x22 || line[k] == 0x27)
            if quoted { k += 1 }
            let name = Array(key.utf8)
            guard line.count >= k + name.count, Array(line[k..<(k + name.count)]) == name else { continue }
            k += name.count
            if quoted { guard k < line.count, line[k] == 0x22 || line[k] == 0x27 else { continue }; k += 1 }
            while k < line.count && (line[k] == 0x20 || line[k] == 0x09) { k += 1 }
            guard k < line.count, line[k] == UInt8(ascii: "=") else { continue }
            k += 1
            while k < line.count && (line[k] == 0x20 || line[k] == 0x09) { k += 1 }
            return ((i + 1, keyColumn), (i + 1, k + 1))
        }
        return nil
    }

    /// A line without its comment (outside strings it is the text after
    /// "#"; headers and keys never hold one) and surrounding blanks.
    private static func stripped(_ line: Substring) -> Substring {
        let body = line.firstIndex(of: "#").map { line[..<$0] } ?? line
        return body.trimmingSpaces()
    }
}

extension Substring {
    /// Without leading and trailing blanks.
    fileprivate func trimmingSpaces() -> Substring {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !blank($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !blank($0) })!
        return self[first...last]
    }
}
