import Glibc

/// A detached pthread running a closure: the supervisor is threads and
/// blocking syscalls, not tasks.
public final class ThreadRunner: Sendable {
    let name: String
    let body: @Sendable () -> Void
    public init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    public func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let runner = Unmanaged<ThreadRunner>.fromOpaque(arg!).takeRetainedValue()
            runner.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(tid)
    }
}
