/// The end of `wrap-and-run --help`: every option in at least one command line.
let wrapAndRunExamples = """


    Examples:
      wrap-and-run make -j2
          A private home on this machine (--home spawn, export root /).
      wrap-and-run --home spawn --root /tmp/home -- cat /data/notes.txt
          Reads /tmp/home/data/notes.txt (the private home's root).
      wrap-and-run --home node:7455 --key-file ~/.tether.key -- make -j2
          A homestub listening on node:7455, started with the same key.
      wrap-and-run --home ssh://me@node:2222 -- make -j2
          ssh -T -p 2222 me@node homestub --stdio carries the session.
      TETHER_SSH_COMMAND='ssh -i ~/.ssh/hpc' wrap-and-run \\
          --home ssh://node --remote-homestub /opt/tether/bin/homestub -- make
          Another ssh command line, and homestub where PATH does not find it.
      wrap-and-run --home-command 'ssh -J gw node homestub --stdio' -- make
          Any command whose stdin and stdout reach a homestub --stdio.
      wrap-and-run --home ssh://node --stdio home -- python3
          The program's terminal is a pty at home, which a second login
          (ssh -tt) hands over: keys, ^C and resizes reach it from here;
          /dev/pts is forwarded, so tty names it.
      wrap-and-run --home ssh://node --attach 4242
          Take over the running process 4242: its new opens follow the
          policy from now on (what it holds open stays local); exits with it.
      wrap-and-run --forward /etc/myapp --local /home/me/.cache -- ./build.sh
          Also forward /etc/myapp; keep /home/me/.cache on this machine.
      wrap-and-run --cwd /home/me/project -- make
          Start in /home/me/project (at home): without --cwd, a current
          directory missing at home means starting in the home's root.
      wrap-and-run --stats --no-cache --sync-writes -- tar xf /home/me/s.tar
          Count the calls; no attribute cache; every write waits for home.
      wrap-and-run --trace=%file,read -- python3 app.py
          One line per intercepted file call and read, strace-style, with
          where it ran (home, local, supervisor) and its latency.
      wrap-and-run --trace-file trace.txt --stats-json stats.json -- make
          The whole trace to trace.txt; the --stats table as JSON.
      wrap-and-run --engine ptrace -- make
          Intercept with ptrace (auto takes it by itself where seccomp's
          listener cannot be had, e.g. under another supervisor).
      wrap-and-run --poll-us 0 -- make
          Sleep at once while waiting for home (less CPU, more latency).
      wrap-and-run --print-policy > policy.toml
      wrap-and-run --policy policy.toml --explain /home/me/x --explain /usr/lib/libc.so.6
          The binding rules as a policy file; which rule decides each path.
      wrap-and-run --policy policy.toml --cache-max 2G -- ./tool
          Rules from the file (copy, deny, ...); copies cached up to 2 GiB.
      wrap-and-run --local-net 10.0.0.0/8 --forward-net 10.1.0.0/16 -- curl http://10.2.0.1/
          Sockets are made at home, except to 10.0.0.0/8 outside 10.1.0.0/16
          (a bare --local-net keeps every socket here).
      wrap-and-run --local-net 10.0.0.0/8 --explain 10.9.9.9:443
          Which rule decides an address.
      wrap-and-run --generate-completion-script bash > wrap-and-run.bash
          Shell completions (bash, zsh or fish); make install installs them.
      wrap-and-run --version
    """
