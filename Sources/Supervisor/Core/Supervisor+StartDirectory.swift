import Glibc
import Policy
import SysKit
import Wire

extension Supervisor {
    /// Where the program starts. With `--cwd DIR`: DIR (relative to the
    /// current directory), which must be enterable, at home if the policy
    /// forwards it. Otherwise where wrap-and-run runs, at home if that is
    /// forwarded; one that home cannot enter (missing there) is not a
    /// reason to refuse the run, since many programs use only absolute
    /// paths: the program starts in the home's root instead, after one
    /// warning on stderr.
    static func startDirectory(link: HomeLink, options: SupervisorOptions) throws(LaunchError) -> WorkingDirectory {
        let here = try currentDirectory()
        if let requested = options.workingDirectory {
            let path = Array(PathNormalizer.normalize(requested, base: String(decoding: here, as: UTF8.self)).utf8)
            switch try enter(path, link: link, policy: options.policy, move: true) {
            case .success(let wd): return wd
            case .failure(let e):
                let place = path.withUnsafeBytes { options.policy.decide($0) }.binding == .local ? "here" : "at home"
                throw .workingDirectory("--cwd \(requested) cannot be entered \(place): \(String(cString: strerror(e.rawValue)))")
            }
        }
        switch try enter(here, link: link, policy: options.policy, move: false) {
        case .success(let wd): return wd
        case .failure(let e):
            let text = String(decoding: here, as: UTF8.self)
            let why = e.rawValue == ENOENT ? "does not exist at home" : "cannot be entered at home (\(String(cString: strerror(e.rawValue))))"
            printError("wrap-and-run: warning: the working directory \(text) is forwarded but \(why); the program starts in the home's root, / (--cwd DIR chooses)\n")
            switch try enter(Array("/".utf8), link: link, policy: options.policy, move: true) {
            case .success(let wd): return wd
            case .failure(let e):
                throw .workingDirectory("neither \(text) nor / can be entered: \(String(cString: strerror(e.rawValue)))")
            }
        }
    }

    /// wrap-and-run's working directory, as the kernel has it.
    private static func currentDirectory() throws(LaunchError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        guard buf.withUnsafeMutableBytes({ Glibc.getcwd($0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }) != nil else {
            throw .workingDirectory("cannot read the working directory: \(String(cString: strerror(Glibc.errno)))")
        }
        return Array(buf.prefix { $0 != 0 })
    }

    /// Enters the absolute, normalized `path` where the policy binds it: at
    /// home (a handle there that the program's relative names use) or, with
    /// `move`, here with chdir(2), which the program inherits (without, the
    /// kernel's directory is taken as it is). The errno when it cannot be
    /// entered; throws only when home is lost.
    private static func enter(_ path: [UInt8], link: HomeLink, policy: RoutingPolicy,
                              move: Bool) throws(LaunchError) -> Result<WorkingDirectory, Errno> {
        let verdict = path.withUnsafeBytes { policy.decide($0) }
        if verdict.binding == .deny {
            throw .workingDirectory("the working directory \(String(decoding: path, as: UTF8.self)) is denied by the policy")
        }
        if verdict.binding == .local {
            if move && Glibc.chdir(String(decoding: path, as: UTF8.self)) != 0 { return .failure(Errno(rawValue: Glibc.errno)) }
            return .success(.local(path: path))
        }
        let slot = link.slots[HomeLink.controlSlot]
        let payload = slot.payload(for: .chdir)
        payload.copyBytes(from: path)
        payload[path.count] = 0
        do {
            let r = try link.call(slot, .chdir, Scalars(Wire.rootDir), payloadLength: path.count + 1)
            if r.result < 0 { return .failure(Errno(rawValue: CInt(-r.result))) }
            return .success(.remote(RemoteDir(handle: r.result, path: Array(r.payload), link: link)))
        } catch {
            throw .home(.unreachable("lost the home node while entering \(String(decoding: path, as: UTF8.self))"))
        }
    }
}
