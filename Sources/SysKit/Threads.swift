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

    /// Starts the thread; traps if it cannot be created (for the few
    /// threads a process cannot run without).
    public func start() {
        guard tryStart() != nil else { preconditionFailure("cannot create thread \(name)") }
    }

    /// Starts the thread and returns it, or nil (nothing started) when the
    /// system refuses another thread: the caller decides what that means.
    @discardableResult
    public func tryStart() -> pthread_t? {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let runner = Unmanaged<ThreadRunner>.fromOpaque(arg!).takeRetainedValue()
            runner.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<ThreadRunner>.fromOpaque(box).release()
            return nil
        }
        pthread_detach(tid)
        return tid
    }
}

/// A counting semaphore (POSIX sem_t): `wait` blocks until a `signal`, and
/// each `signal` wakes at most one waiter.
// @unchecked Sendable: sem_t is made for concurrent use from any thread,
// and the memory is allocated once, never moved and freed only in deinit.
public final class CountingSemaphore: @unchecked Sendable {
    private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    public init(value: UInt32) { sem_init(sem, 0, value) }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    /// Takes one unit, waiting for it (a signal does not interrupt the wait).
    public func wait() {
        while sem_wait(sem) != 0 && errno == EINTR {}
    }

    /// Gives one unit back, waking one waiter if there is one.
    public func signal() { sem_post(sem) }
}
