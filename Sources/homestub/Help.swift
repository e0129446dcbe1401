import ArgumentParser
import HomeNode
import Logging

/// The end of `homestub --help`: every option in at least one command line.
let homestubExamples = """


    Examples:
      homestub --listen 0.0.0.0:7455 --key-file ~/.tether.key --root /export
          Serve /export (a target's path P is /export/P) to key holders.
      homestub --listen 0.0.0.0:7455 --key-file /etc/tether.key --user alice
          As root: every deputy drops to alice before it serves.
      homestub --listen 127.0.0.1:7455 --key-file k --allow-root
          As root, the whole file system, acting as each target user.
      homestub --stdio
          One session on stdin/stdout, e.g. run by `ssh -T node homestub
          --stdio` (wrap-and-run --home ssh://node); quiet unless it fails.
      homestub --hand-terminal DIR
          Run by wrap-and-run --stdio home in a second login (ssh -tt):
          hands this terminal to the session waiting at DIR.
      homestub --stdio --log-level info --root /export --allow-devices
          Also log the session's end; open device nodes inside /export.
      homestub --listen 0.0.0.0:7455 --key-file k --log-format json \\
               --root /srv
          One JSON object per log line (time, level, label, message,
          metadata), for journald, Fluent Bit, Vector and the like.
      homestub --listen 0.0.0.0:7455 --key-file k --root /srv \\
               --max-sessions 32 --max-handshakes 16 \\
               --handshake-timeout 5 --idle-timeout 60
          Bounds on strangers and sessions (see the README's Security).
      homestub --listen 0.0.0.0:7455 --key-file k --root /srv \\
               --max-open 4096 --max-inflight 64 --poll-us 0
          Per-session limits; deputies sleep at once instead of polling.
      homestub --generate-completion-script bash > homestub.bash
          Shell completions (bash, zsh or fish); make install installs them.
      homestub --version
    """

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
