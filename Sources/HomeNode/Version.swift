import Wire

/// Tether's version, the one both tools print for `--version`. There are
/// no releases yet: this is the version of the tree, raised by hand when a
/// release is cut, with the wire protocol version it speaks.
public enum TetherVersion {
    public static let release = "0.1.0"
    /// "0.1.0 (wire protocol 1)".
    public static var description: String { "\(release) (wire protocol \(Wire.protocolVersion))" }
}
