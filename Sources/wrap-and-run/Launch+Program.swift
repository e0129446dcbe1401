import Glibc
import SysKit

/// Checks on the program and its standard streams before it starts.
extension Launch {
    func checkBinary(_ path: String) {
        let check: ProgramCheck
        do { check = try ProgramCheck.check(path: path) } catch {
            fail(Status.cannotExecute, "\(path): cannot read: \(String(cString: strerror(error.rawValue)))")
        }
        switch check {
        case .ok, .script: return
        case .wrongClass: fail(Status.cannotExecute, "\(path): 32-bit ELF executables are not supported (x86_64 64-bit only)")
        case .wrongMachine(let m): fail(Status.cannotExecute, "\(path): ELF for machine \(machineName(m)), not x86_64")
        case .notELF: fail(Status.cannotExecute, "\(path): not an ELF executable or #! script")
        }
    }

    private func machineName(_ m: Int32) -> String {
        switch m {
        case 3: return "i386 (EM_386)"
        case 40: return "ARM (EM_ARM)"
        case 183: return "aarch64 (EM_AARCH64)"
        case 243: return "RISC-V (EM_RISCV)"
        default: return "EM \(m)"
        }
    }

    /// `--stdio home` (the home's terminal) or `local` (wrap-and-run's own).
    var stdioAtHome: Bool {
        switch stdio {
        case "home": return true
        case "local": return false
        default: fail(Status.usage, "--stdio takes local or home, not \(stdio)")
        }
    }
}
