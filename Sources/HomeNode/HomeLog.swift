import Glibc
import Logging

/// How homestub writes its log to stderr (`--log-format`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's stream format: `TIME LEVEL LABEL: METADATA [SOURCE] MESSAGE`.
    case text
    /// One JSON object per line, for log shippers (see `JSONLogHandler`).
    case json
}

/// homestub's logger (the listener's, a `--stdio` session's, each
/// deputy's): `label` at `level`, to stderr in `format`. Built per process
/// rather than through `LoggingSystem.bootstrap`, so a deputy can take the
/// level and format its listener was started with.
public func homeLogger(label: String, level: Logger.Level, format: LogFormat) -> Logger {
    var log: Logger
    switch format {
    case .text: log = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    case .json: log = Logger(label: label) { JSONLogHandler(label: $0) }
    }
    log.logLevel = level
    return log
}

/// Writes each record to stderr as one JSON object on one line:
/// `{"time":"2026-12-02T01:55:32.123456Z","level":"info","label":"homestub",
/// "message":"…","metadata":{"session":"3"}}`. The time is UTC with
/// microseconds; metadata values are strings, or arrays and objects of them.
/// A record is one `write(2)`, so the lines of a listener and its deputies,
/// which share the stream, do not interleave.
public struct JSONLogHandler: LogHandler {
    public let label: String
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        if let error = event.error { all["error"] = "\(error)" }
        var line = "{\"time\":" + Self.quoted(Self.timestamp()) + ",\"level\":" + Self.quoted(event.level.rawValue)
        line += ",\"label\":" + Self.quoted(label) + ",\"message\":" + Self.quoted(event.message.description)
        line += ",\"metadata\":" + Self.object(all) + "}\n"
        let bytes = Array(line.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress! + done, $0.count - done) }
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
        }
    }

    /// Now, as RFC 3339 UTC with microseconds.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = Glibc.tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tm)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%S", &tm)
        let micros = String(ts.tv_nsec / 1000)
        let date = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return date + "." + String(repeating: "0", count: 6 - micros.count) + micros + "Z"
    }

    static func object(_ metadata: Logger.Metadata) -> String {
        "{" + metadata.sorted { $0.key < $1.key }.map { quoted($0.key) + ":" + value($0.value) }.joined(separator: ",") + "}"
    }

    static func value(_ v: Logger.Metadata.Value) -> String {
        switch v {
        case .string(let s): return quoted(s)
        case .stringConvertible(let c): return quoted(c.description)
        case .array(let a): return "[" + a.map(value).joined(separator: ",") + "]"
        case .dictionary(let d): return object(d)
        }
    }

    /// `s` as a JSON string: quotes, backslashes and control characters escaped.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
