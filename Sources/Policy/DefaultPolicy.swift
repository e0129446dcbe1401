/// The rules in force before any policy file or command-line prefix, each
/// with the reason `--print-policy` and `--explain` give for it.
public enum DefaultPolicy {
    /// Paths the target's own system serves (rebind by type), and the
    /// catch-all that forwards the rest (global reference).
    public static let rules: [Rule] = [
        Rule(prefix: "/", binding: .forward, origin: "default",
             reason: "global reference: the user's files and state live at home"),
        Rule(prefix: "/proc", binding: .local, origin: "default",
             reason: "rebind by type: the target kernel's view of its own processes"),
        Rule(prefix: "/sys", binding: .local, origin: "default",
             reason: "rebind by type: the target kernel's devices and settings"),
        Rule(prefix: "/dev", binding: .local, origin: "default",
             reason: "rebind by type: the target's devices (null, urandom, its terminals)"),
        Rule(prefix: "/usr", binding: .local, origin: "default",
             reason: "rebind by type: the target's system programs and libraries"),
        Rule(prefix: "/lib*", binding: .local, origin: "default",
             reason: "rebind by type: the target's loader and system libraries"),
        Rule(prefix: "/bin", binding: .local, origin: "default",
             reason: "rebind by type: the target's system programs"),
        Rule(prefix: "/sbin", binding: .local, origin: "default",
             reason: "rebind by type: the target's system programs"),
        Rule(prefix: "/etc", binding: .local, origin: "default",
             reason: "rebind by type: the target's configuration (loader cache, name service)"),
        Rule(prefix: "/run", binding: .local, origin: "default",
             reason: "rebind by type: the target's runtime state (sockets, pid files)"),
    ]
}
