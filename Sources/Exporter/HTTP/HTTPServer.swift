#if canImport(Glibc)
import Glibc
#endif
import CMicroHTTPD
import CGnuTLSShims
import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// A request as the routes see it: no C types.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target as sent: origin form (`/metrics`) or absolute form (`http://h/metrics`).
    public var path: String
    public var acceptEncoding: String?
    public var accept: String?
    /// `HTTP/1.1`, `HTTP/1.0`.
    public var version: String
    /// How many Host header fields came, and whether any field name was malformed (whitespace
    /// before the colon): RFC 9112 requires a 400 for both mistakes.
    public var hostFields: Int
    public var malformedFieldName: Bool
    /// The `Authorization: Basic` user and password, when sent and well-formed.
    public var credentials: BasicCredentials?
    /// What the TLS client presented; `.notChecked` unless the server was asked to check.
    public var clientCertificate: ClientCertificate
    /// The client's IP address ("" when unknown), for throttling failed logins.
    public var clientAddress: String

    public init(method: String, path: String, acceptEncoding: String? = nil, accept: String? = nil, version: String = "HTTP/1.1",
                hostFields: Int = 1, malformedFieldName: Bool = false, credentials: BasicCredentials? = nil,
                clientCertificate: ClientCertificate = .notChecked, clientAddress: String = "") {
        self.method = method
        self.path = path
        self.acceptEncoding = acceptEncoding
        self.accept = accept
        self.version = version
        self.hostFields = hostFields
        self.malformedFieldName = malformedFieldName
        self.credentials = credentials
        self.clientCertificate = clientCertificate
        self.clientAddress = clientAddress
    }
}

/// A TLS client's certificate, as GnuTLS judged it against the trusted client CAs.
public enum ClientCertificate: Sendable, Equatable {
    case notChecked
    case none
    case verified
    case rejected(reason: String)
}

/// How the server speaks TLS: the PEM material and what to ask of clients.
public struct HTTPServerTLS: Sendable {
    public var certificatePEM: [UInt8]
    public var keyPEM: [UInt8]
    /// CAs for client certificates: with them libmicrohttpd asks clients for one.
    public var clientCAPEM: [UInt8]?
    /// Whether each request's client certificate is examined (`HTTPRequest.clientCertificate`).
    public var checkClientCertificates: Bool
    /// GnuTLS priority string (protocol versions).
    public var priorities: String

    public init(certificatePEM: [UInt8], keyPEM: [UInt8], clientCAPEM: [UInt8]?, checkClientCertificates: Bool, priorities: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.clientCAPEM = clientCAPEM
        self.checkClientCertificates = checkClientCertificates
        self.priorities = priorities
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    /// Sent without copying; shared with the exposition cache.
    public var payload: SharedBytes

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.init(status: status, headers: headers, payload: SharedBytes(body))
    }

    public init(status: Int, headers: [(String, String)] = [], payload: SharedBytes) {
        self.status = status
        self.headers = headers
        self.payload = payload
    }
}

/// What the handler answers: a response now, or work that must not run on the event thread.
public enum HTTPReply: Sendable {
    case now(HTTPResponse)
    /// `compute` runs on `worker` while the connection waits, suspended, costing the event
    /// thread nothing; `whenBusy` answers at once instead if the worker's queue is full or the
    /// server is stopping.
    case later(on: WorkerThread, after: Duration = .zero, whenBusy: @Sendable () -> HTTPResponse, _ compute: @Sendable () -> HTTPResponse)
}

public typealias HTTPHandler = @Sendable (HTTPRequest) -> HTTPReply

/// Limits that keep a misbehaving client from hurting other clients.
public struct HTTPLimits: Sendable {
    /// Idle seconds before MHD closes a connection (0.9.75's default is never). Short, because
    /// idle connections hold slots of the connection limit that waiting clients need.
    /// Scrapers reconnect at their next scrape, which costs nothing worth measuring.
    public var connectionTimeoutSeconds: UInt32 = 10
    /// Open connections at once; beyond it the kernel backlog holds new ones. 256, or fewer
    /// when the open-file limit is low (`connectionLimit(openFiles:)`).
    public var connectionLimit: UInt32 = HTTPLimits.connectionLimit(openFiles: OpenFiles.softLimit())

    /// Descriptors kept for everything but connections: barman's pipes (4 commands at once, two
    /// each), catalog reads, the listening socket, signal and wakeup pipes, libmicrohttpd's
    /// epoll descriptor and wakeup pipe (three per event loop), logging.
    static let reservedDescriptors = 48

    /// At most 256 connections, and never so many that barman could not be started or a
    /// catalog read: with `ulimit -n 64` 16 connections (libmicrohttpd ignores the limit itself).
    static func connectionLimit(openFiles: Int?) -> UInt32 {
        guard let openFiles else { return 256 }
        return UInt32(clamping: max(4, min(256, openFiles - reservedDescriptors)))
    }
    /// Per-connection buffer for request line and headers; larger requests get 431/414.
    /// libmicrohttpd zeroes all of it after every request (twice): at its default of 32 KiB
    /// that was 6 % of the exporter's CPU under load. 16 KiB still takes 15 kB of headers,
    /// nearly twice nginx's default limit of a header line (8 kB).
    public var connectionMemoryLimit: Int = 16 * 1024
    /// Each connection's kernel send buffer (the kernel doubles it). Autotuned, it grows to
    /// megabytes on a fast link, and each write of a large body (9.8 MB at 1,000 servers x 60
    /// backups) then hands one connection megabytes while the others of its event thread wait:
    /// with 16 connections p99 was 0.8-5x nginx's from run to run. 256 kB still moves a body at
    /// 250 MB/s over a 1 ms round trip (docs/performance.md).
    public var sendBufferBytes: Int32 = 256 * 1024
    /// Event loops (`EventLoop`), each a thread serving its own connections: one
    /// per processor the exporter may use, at most 4, like nginx's `worker_processes auto`. With
    /// one thread the exporter served fewer requests a second than nginx in the gzip cells of
    /// `make bench` (docs/performance.md); each loop costs a stack, an epoll descriptor and a pipe.
    public var threads: Int = HTTPLimits.threads(processors: Processors.available())

    static func threads(processors: Int) -> Int { max(1, min(4, processors)) }

    public init() {}
}

/// The libmicrohttpd adapter: its event loops (`HTTPLimits.threads`, one per processor, each a
/// libmicrohttpd daemon driven by a thread of ours, `EventLoop`) answer every request by calling
/// the handler; what the handler must not do there (a bcrypt, a delay) it returns as `.later`,
/// and the connection is suspended until a worker thread has the response. This is the only
/// file that sees libmicrohttpd.
public final class HTTPServer: Sendable {
    /// The event loops until stop(); the lock also makes stop() run once.
    private let loops: Mutex<[EventLoop]?>
    private let context: ServerContext
    private let tlsStrings: TLSStrings?
    private let acceptor: ConnectionAcceptor
    public let listener: ListenSocket

    /// Starts serving on an already bound and listening socket (so the caller knows the port,
    /// and a reload can bind the new address before the old server stops).
    ///
    /// With `tls`, every connection speaks TLS (GnuTLS inside libmicrohttpd), and `readsCredentials`
    /// makes each request carry its basic-auth credentials.
    public init(listener: ListenSocket, limits: HTTPLimits = HTTPLimits(), tls: HTTPServerTLS? = nil, readsCredentials: Bool = false,
                logger: Logger, handler: @escaping HTTPHandler) throws(SystemError) {
        self.listener = listener
        let tlsStrings = tls.map(TLSStrings.init)
        self.tlsStrings = tlsStrings
        try listener.makeNonBlocking()
        let connectionClosed = try Wakeup()
        let serverContext = ServerContext(handler: handler, logger: logger, servesTLS: tls != nil,
                                          checksClientCertificates: tls?.checkClientCertificates ?? false,
                                          readsCredentials: readsCredentials, sendBufferBytes: limits.sendBufferBytes,
                                          connectionLimit: Int(limits.connectionLimit), connectionClosed: connectionClosed)
        // MHD holds this reference in its callbacks' `cls` until stop() releases it.
        let context = Unmanaged.passRetained(serverContext)
        self.context = serverContext

        // No libmicrohttpd thread: each `EventLoop` thread drives a daemon of its own (`MHD_run`).
        // Without its threads libmicrohttpd has no inter-thread channel (it drops MHD_USE_ITC):
        // the loops' own wakeups stand in for it.
        var flags = MHD_USE_EPOLL.rawValue | MHD_USE_ERROR_LOG.rawValue
            | MHD_ALLOW_SUSPEND_RESUME.rawValue | MHD_USE_NO_LISTEN_SOCKET.rawValue
        var options: [MHD_OptionItem] = [
            MHD_OptionItem(option: .EXTERNAL_LOGGER, value: unsafeBitCast(mhdLogger, to: Int.self), ptr_value: context.toOpaque()),
            MHD_OptionItem(option: .NOTIFY_COMPLETED, value: unsafeBitCast(requestCompleted, to: Int.self), ptr_value: context.toOpaque()),
            MHD_OptionItem(option: .UNESCAPE_CALLBACK, value: unsafeBitCast(keepPercentEscapes, to: Int.self), ptr_value: nil),
            MHD_OptionItem(option: .CONNECTION_TIMEOUT, value: Int(limits.connectionTimeoutSeconds), ptr_value: nil),
            // Each daemon may hold the whole limit: the acceptor keeps the total within it.
            MHD_OptionItem(option: .CONNECTION_LIMIT, value: Int(limits.connectionLimit), ptr_value: nil),
            MHD_OptionItem(option: .NOTIFY_CONNECTION, value: unsafeBitCast(connectionStarted, to: Int.self), ptr_value: context.toOpaque()),
            MHD_OptionItem(option: .CONNECTION_MEMORY_LIMIT, value: limits.connectionMemoryLimit, ptr_value: nil),
        ]
        if let tlsStrings {
            flags |= MHD_USE_TLS.rawValue
            // libmicrohttpd reads these C strings when it starts; they live as long as the server.
            options.append(MHD_OptionItem(option: .HTTPS_MEM_CERT, value: 0, ptr_value: UnsafeMutableRawPointer(tlsStrings.certificate)))
            options.append(MHD_OptionItem(option: .HTTPS_MEM_KEY, value: 0, ptr_value: UnsafeMutableRawPointer(tlsStrings.key)))
            options.append(MHD_OptionItem(option: .HTTPS_PRIORITIES, value: 0, ptr_value: UnsafeMutableRawPointer(tlsStrings.priorities)))
            if let trust = tlsStrings.clientCA {
                options.append(MHD_OptionItem(option: .HTTPS_MEM_TRUST, value: 0, ptr_value: UnsafeMutableRawPointer(trust)))
            }
        }
        options.append(MHD_OptionItem(option: .END, value: 0, ptr_value: nil))
        var started: [EventLoop] = []
        func abandon() {
            for loop in started { loop.stop() }
            for loop in started { MHD_stop_daemon(loop.daemon) }
            context.release()
        }
        for _ in 0..<max(1, limits.threads) {
            // MHD_start_daemon is variadic (not callable from Swift); the _va form with one
            // MHD_OPTION_ARRAY argument carries every option.
            let daemon: OpaquePointer? = options.withUnsafeMutableBufferPointer { buffer in
                withVaList([Int32(MHD_OPTION.ARRAY.rawValue), Int(bitPattern: buffer.baseAddress), Int32(MHD_OPTION.END.rawValue)]) { arguments in
                    MHD_start_daemon_va(flags, 0, nil, nil, accessHandler, context.toOpaque(), arguments)
                }
            }
            guard let daemon else {
                let code = errno == 0 ? EINVAL : errno
                abandon()
                throw SystemError("start the HTTP server on", listener.displayAddress, call: "MHD_start_daemon", code: code)
            }
            do {
                started.append(try EventLoop(daemon: daemon, context: serverContext))
            } catch {
                MHD_stop_daemon(daemon)
                abandon()
                throw error
            }
        }
        do {
            acceptor = try ConnectionAcceptor(listener: listener, loops: started, context: serverContext)
        } catch {
            abandon()
            throw error
        }
        loops = Mutex(started)
    }

    /// Stops accepting, lets responses already queued finish (up to `drainTimeout`), then
    /// closes every connection and waits for the event loops to end.
    ///
    /// `keepingListener`: the listening socket stays open (a successor already serves on it; the
    /// kernel queues new connections meanwhile, none is refused).
    public func stop(drainTimeout: Duration = .seconds(2), keepingListener: Bool = false) {
        loops.withLock { running in
            guard let loops = running else { return }
            // Connections waiting for a worker get their answer now (503): MHD must not stop with
            // suspended connections, and a worker must never resume one after it stopped.
            context.resumeAllWaiting()
            acceptor.stop()
            Deadline.poll(every: .milliseconds(5), for: drainTimeout) {
                context.responsesInFlight.load(ordering: .acquiring) == 0 && context.resumedNotQueued.load(ordering: .acquiring) == 0
            }
            // Each daemon is stopped only once its loop no longer runs it (a daemon without
            // threads of its own is not safe to use from two threads).
            for loop in loops { loop.stop() }
            for loop in loops { MHD_stop_daemon(loop.daemon) }
            running = nil
            Unmanaged.passUnretained(context).release()
            if !keepingListener { listener.close() }
        }
    }

    /// Hands over to a successor serving on the same listening socket without dropping a
    /// connection: this server accepts no more, answers each request still coming on its open
    /// connections with `Connection: close` (the client reconnects, to the successor), and stops
    /// once `within` has passed (idle keep-alive connections are closed by the connection
    /// timeout before that). Returns at once; the stop happens on a thread of its own.
    public func retire(within: Duration) {
        context.retiring.store(true, ordering: .releasing)
        acceptor.stop()
        do {
            try DetachedThread.start(name: "http drain") { [self] in
                Deadline.sleep(within)
                stop(keepingListener: true)
            }
        } catch {
            stop(keepingListener: true)
        }
    }

    /// Responses queued and not yet completely sent (for tests and shutdown).
    var responsesInFlight: Int {
        context.responsesInFlight.load(ordering: .acquiring)
    }

    deinit { stop() }
}


/// What the C callbacks reach through their `void *cls`.
private final class ServerContext: Sendable {
    let handler: HTTPHandler
    let logger: Logger
    let checksClientCertificates: Bool
    let readsCredentials: Bool
    let servesTLS: Bool
    let sendBufferBytes: Int32
    /// Connections libmicrohttpd has closed, ever: the acceptor's count of those it handed over
    /// minus this is how many are open. At `connectionLimit` the acceptor waits until a close
    /// wakes it (`connectionClosed`).
    let connectionsClosed = Atomic<Int>(0)
    let connectionLimit: Int
    let connectionClosed: Wakeup
    let acceptorWaitsForRoom = Atomic<Bool>(false)
    let responsesInFlight = Atomic<Int>(0)
    /// Set when a successor took over (`retire`): answers close their connection.
    let retiring = Atomic<Bool>(false)
    /// Connections resumed with their response and not yet queued it (stop waits for them too).
    let resumedNotQueued = Atomic<Int>(0)
    /// Suspended connections waiting for a worker's response; nil once the server stops.
    private let waiting = Mutex<[ObjectIdentifier: PendingReply]?>([:])
    /// Each event loop's wakeup: a daemon without threads of its own does not wake its loop
    /// when a connection is resumed from another thread (libmicrohttpd drops its inter-thread
    /// channel then), so whoever resumes one wakes the loops.
    private let loopWakeups = Mutex<[Wakeup]>([])

    init(handler: @escaping HTTPHandler, logger: Logger, servesTLS: Bool, checksClientCertificates: Bool, readsCredentials: Bool,
         sendBufferBytes: Int32, connectionLimit: Int, connectionClosed: Wakeup) {
        self.servesTLS = servesTLS
        self.sendBufferBytes = sendBufferBytes
        self.connectionLimit = connectionLimit
        self.connectionClosed = connectionClosed
        self.handler = handler
        self.logger = logger
        self.checksClientCertificates = checksClientCertificates
        self.readsCredentials = readsCredentials
    }

    /// Records `pending` as waiting; false when the server is stopping (answer at once then).
    func startWaiting(_ pending: PendingReply) -> Bool {
        waiting.withLock { waiting in
            guard waiting != nil else { return false }
            waiting?[ObjectIdentifier(pending)] = pending
            return true
        }
    }

    /// Counts a connection gone (closed by libmicrohttpd, or handed to a loop and never added):
    /// its slot is free, and the acceptor is woken if it waits for one.
    func countClosedConnection() {
        connectionsClosed.add(1, ordering: .sequentiallyConsistent)
        if acceptorWaitsForRoom.load(ordering: .sequentiallyConsistent) { connectionClosed.signal() }
    }

    /// Adds an event loop's wakeup to those `wakeLoops` signals.
    func register(loopWakeup: Wakeup) {
        loopWakeups.withLock { $0.append(loopWakeup) }
    }

    /// Wakes every event loop to pick up the connections just resumed (a few loops; resuming
    /// is rare: first renders, delayed answers, password checks).
    private func wakeLoops() {
        for wakeup in loopWakeups.withLock({ $0 }) { wakeup.signal() }
    }

    /// Gives a waiting connection its response and wakes it, unless the server stopped
    /// meanwhile (then the connection was already answered and resumed by `resumeAllWaiting`).
    func finish(_ pending: PendingReply, with response: HTTPResponse) {
        waiting.withLock { waiting in
            guard waiting?.removeValue(forKey: ObjectIdentifier(pending)) != nil else { return }
            pending.response.withLock { $0 = response }
            resumedNotQueued.add(1, ordering: .releasing)
            MHD_resume_connection(pending.connection)
        }
        wakeLoops()
    }

    /// At stop: every waiting connection is answered 503 and resumed, and no worker resumes one
    /// again.
    func resumeAllWaiting() {
        waiting.withLock { waiting in
            for pending in (waiting ?? [:]).values {
                pending.response.withLock { $0 = HTTPResponse(status: 503, headers: [("Content-Type", "text/plain; charset=utf-8")],
                                                              body: Array("503 service unavailable: the exporter is stopping or reloading\n".utf8)) }
                resumedNotQueued.add(1, ordering: .releasing)
                MHD_resume_connection(pending.connection)
            }
            waiting = nil
        }
        wakeLoops()
    }
}

/// Accepts connections and hands them to the event loops in turn, so connections opened together
/// are shared evenly among them. Left to itself, every event thread of libmicrohttpd 0.9.75
/// polled the listening socket and the first one awake accepted up to 10 at once: a scraper's 16
/// connections often all went to one thread while the other idled, and one processor served them
/// all (docs/performance.md).
///
/// At the connection limit it accepts no more, and the kernel's backlog holds new connections
/// until one closes.
private final class ConnectionAcceptor: Sendable {
    private let listener: ListenSocket
    private let loops: [EventLoop]
    private let context: ServerContext
    private let thread = StoppableThread()

    init(listener: ListenSocket, loops: [EventLoop], context: ServerContext) throws(SystemError) {
        self.listener = listener
        self.loops = loops
        self.context = context
        try thread.start(name: "http accept") { [self] in run() }
    }

    /// Stops accepting and returns once the accepting thread has ended (the listening socket
    /// stays open). Idempotent.
    func stop() {
        thread.stop(waking: { context.connectionClosed.signal() })
    }

    private func run() {
        var handedOver = 0
        var next = 0
        var failing = false
        while !thread.isStopping {
            // Connections handed over and not started yet count as open, or a loop could get
            // more than the limit. One libmicrohttpd never starts (out of memory making its
            // pool) is never closed either: a slot lost, not a deadlock.
            func room() -> Int {
                context.connectionLimit - (handedOver - context.connectionsClosed.load(ordering: .acquiring))
            }
            if room() <= 0 {
                // A close or `stop` wakes this; checked again after saying so, for a close that
                // came just before.
                context.acceptorWaitsForRoom.store(true, ordering: .sequentiallyConsistent)
                if room() <= 0 { context.connectionClosed.wait(timeout: .milliseconds(100)) }
                context.acceptorWaitsForRoom.store(false, ordering: .sequentiallyConsistent)
                continue
            }
            let woken = context.connectionClosed.wait(orInputOn: listener.fileDescriptor, timeout: nil)
            guard woken.input else {
                // Neither: poll itself failed (out of memory); not a reason to spin.
                if !woken.signalled { Deadline.sleep(.milliseconds(100)) }
                continue
            }
            for _ in 0..<min(room(), 16) {
                let connection: AcceptedConnection
                do {
                    guard let accepted = try listener.accept() else { break }
                    connection = accepted
                } catch {
                    // Out of descriptors or kernel memory: the connections wait in the backlog.
                    if !failing { context.logger.error("cannot accept connections; trying again every 100 ms", ["error": error.description]) }
                    failing = true
                    context.connectionClosed.wait(timeout: .milliseconds(100))
                    break
                }
                failing = false
                if loops[next].hand(connection) {
                    handedOver += 1
                } else {
                    System.close(connection.descriptor)  // the server is stopping
                }
                next = (next + 1) % loops.count
            }
        }
    }
}

/// One libmicrohttpd daemon (no threads of its own, `MHD_USE_EPOLL`) and the thread that runs
/// it: waits until its epoll descriptor has events (or a connection is handed over, or a
/// timeout is due), then lets the processor go once (`sched_yield`) before `MHD_run` reads
/// and answers every request that is ready.
///
/// Why the yield: requests on several keep-alive connections come in bursts (a load generator
/// such as wrk, or several scrapers at once). The first request of a burst wakes this thread,
/// which otherwise preempts the client mid-burst and answers one request at a time; yielding
/// lets the client finish sending, and the whole burst is answered in one pass. On 2 processors shared with wrk at 16
/// connections it took the p99 from 2-5 ms to 0.5-1.6 ms (docs/performance.md, "Latency"); it
/// costs one system call per wakeup, nothing when idle. libmicrohttpd's own threads cannot
/// do this, hence loops of ours.
///
/// A TLS loop also yields before every pass while requests keep it busy: each answer costs it
/// a few times a plain one (encryption; libmicrohttpd 0.9.75 sends the header as a record of
/// its own, and GnuTLS reads a record in two calls), so under load it never waits and never
/// reaches the yield above, while the clients it preempts are the ones decrypting its answers.
/// With wrk on 2 processors this halved the TLS p99 at 16 connections and cut it by a quarter
/// to a half at 64 (docs/performance.md, "TLS"); a plain loop yielding the same way lost
/// throughput and its p99 at 16 connections got worse, so only TLS loops do.
private final class EventLoop: Sendable {
    // nonisolated(unsafe): the daemon is used only by this loop's thread while it runs, and by
    // `HTTPServer` (MHD_stop_daemon) after `stop` returned.
    nonisolated(unsafe) let daemon: OpaquePointer
    private let epollDescriptor: Int32
    private let context: ServerContext
    /// Connections the acceptor handed over and this thread has not given libmicrohttpd yet
    /// (MHD_add_connection is not thread-safe for a daemon without threads); nil once stopped.
    private let inbox = Mutex<[AcceptedConnection]?>([])
    private let wakeup: Wakeup
    private let thread = StoppableThread()
    private let yieldsWhileBusy: Bool

    init(daemon: OpaquePointer, context: ServerContext) throws(SystemError) {
        self.daemon = daemon
        self.context = context
        yieldsWhileBusy = context.servesTLS
        epollDescriptor = cmhd_daemon_epoll_fd(daemon)
        guard epollDescriptor >= 0 else {
            throw SystemError("find the epoll descriptor of", "an HTTP event loop", call: "MHD_get_daemon_info", code: EINVAL)
        }
        let wakeup = try Wakeup()
        self.wakeup = wakeup
        context.register(loopWakeup: wakeup)
        try thread.start(name: "http loop") { [self] in run() }
    }

    /// Gives `connection` to this loop; false when it has stopped (the caller closes it).
    func hand(_ connection: AcceptedConnection) -> Bool {
        let queued = inbox.withLock { inbox -> Bool in
            guard inbox != nil else { return false }
            inbox?.append(connection)
            return true
        }
        if queued { wakeup.signal() }
        return queued
    }

    /// Returns once the thread has ended; connections handed over and never added are closed.
    /// Idempotent.
    func stop() {
        // The loop ends within one MHD_run.
        thread.stop(waking: { wakeup.signal() })
        for connection in inbox.withLock({ inbox in defer { inbox = nil }; return inbox ?? [] }) {
            System.close(connection.descriptor)
            context.countClosedConnection()
        }
    }

    private func run() {
        defer { if context.servesTLS { cgt_release_thread() } }
        var failing = false
        while !thread.isStopping {
            addHandedConnections()
            var due: UInt64 = 0
            let hasTimeout = MHD_get_timeout(daemon, &due) == MHD_Result.YES
            if !hasTimeout || due > 0 {
                // Milliseconds until a connection times out (or nothing), at most a minute.
                let timeout: Duration? = hasTimeout ? .milliseconds(Int64(min(due, 60_000))) : nil
                if wakeup.wait(orInputOn: epollDescriptor, timeout: timeout).input {
                    // The result does not matter: at worst the burst is answered in two passes.
                    _ = sched_yield()
                }
            } else if yieldsWhileBusy {
                _ = sched_yield()
            }
            let ran = MHD_run(daemon)
            if context.servesTLS { endTLSPass() }
            guard ran == MHD_Result.YES else {
                // Only epoll_wait failing (out of memory) makes this fail: retried, not spun.
                if !failing { context.logger.error("an HTTP event loop failed; trying again every 100 ms") }
                failing = true
                wakeup.wait(timeout: .milliseconds(100))
                continue
            }
            failing = false
        }
    }

    /// Writes what the pass held back of a TLS response (`queue`) before the loop waits.
    private func endTLSPass() {
        if cgt_end_pass() < 0 {
            context.logger.debug("cannot write a TLS response", ["error": SystemError.reason(errno)])
        }
    }

    /// Gives libmicrohttpd the connections handed over since the last pass.
    private func addHandedConnections() {
        let handed = inbox.withLock { inbox -> [AcceptedConnection] in
            defer { if inbox != nil { inbox = [] } }
            return inbox ?? []
        }
        for connection in handed {
            var address = connection.address
            // libmicrohttpd closes the socket itself when it refuses it.
            let added = withUnsafePointer(to: &address) { storage in
                storage.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    MHD_add_connection(daemon, connection.descriptor, $0, connection.addressLength)
                }
            }
            if added != MHD_Result.YES {
                context.logger.debug("libmicrohttpd refused a connection", ["error": SystemError.reason(errno)])
                context.countClosedConnection()
            }
        }
    }

}

/// A request whose response a worker computes while its connection is suspended; MHD keeps a
/// retained reference in the request's `con_cls` until the request completes.
private final class PendingReply: Sendable {
    // nonisolated(unsafe): set once in init; libmicrohttpd's connection outlives the request.
    nonisolated(unsafe) let connection: OpaquePointer
    let response = Mutex<HTTPResponse?>(nil)
    /// Whether the response was queued (counted in `responsesInFlight` until completion).
    let queued = Atomic<Bool>(false)
    /// False for HEAD: the response goes out without its body.
    let sendsBody: Bool

    init(connection: OpaquePointer, sendsBody: Bool) {
        self.connection = connection
        self.sendsBody = sendsBody
    }
}

/// NUL-terminated copies of the TLS material for libmicrohttpd, freed (the key wiped first)
/// with the server.
private final class TLSStrings: Sendable {
    // nonisolated(unsafe): written once in init, then only read (by libmicrohttpd at start).
    nonisolated(unsafe) let certificate: UnsafeMutablePointer<CChar>
    nonisolated(unsafe) let key: UnsafeMutablePointer<CChar>
    nonisolated(unsafe) let priorities: UnsafeMutablePointer<CChar>
    nonisolated(unsafe) let clientCA: UnsafeMutablePointer<CChar>?

    init(_ tls: HTTPServerTLS) {
        certificate = Self.copy(tls.certificatePEM)
        key = Self.copy(tls.keyPEM)
        priorities = Self.copy(Array(tls.priorities.utf8))
        clientCA = tls.clientCAPEM.map(Self.copy)
    }

    static func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        for (index, byte) in bytes.enumerated() { pointer[index] = CChar(bitPattern: byte) }
        pointer[bytes.count] = 0
        return pointer
    }

    deinit {
        _ = memset(key, 0, strlen(key))
        for pointer in [certificate, key, priorities] + (clientCA.map { [$0] } ?? []) { pointer.deallocate() }
    }
}

/// Per-request state MHD keeps for us in `void **con_cls` (a tag, not a real pointer): nil
/// before the first call, then one of these.
private enum RequestState: Int {
    case seen = 1
    case responseQueued = 2

    var pointer: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: rawValue) }
    static func of(_ pointer: UnsafeMutableRawPointer?) -> RequestState? { RequestState(rawValue: Int(bitPattern: pointer)) }
}

/// MHD calls this twice or more per request. Replying on the first call makes MHD close the
/// connection (no keep-alive), so the first call only marks the request as seen; request bodies
/// are discarded (no route takes one) and the reply is queued once the upload is complete.
private let accessHandler: MHD_AccessHandlerCallback = { cls, connection, url, method, version, _, uploadDataSize, requestState in
    guard let cls, let connection, let requestState else { return MHD_Result.NO }
    if requestState.pointee == nil {
        requestState.pointee = RequestState.seen.pointer
        return MHD_Result.YES
    }
    if let uploadDataSize, uploadDataSize.pointee != 0 {
        uploadDataSize.pointee = 0
        return MHD_Result.YES
    }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    // Resumed: a worker has the response of this request.
    if let raw = requestState.pointee, RequestState.of(raw) == nil {
        let pending = Unmanaged<PendingReply>.fromOpaque(raw).takeUnretainedValue()
        let response = pending.response.withLock { $0 } ?? HTTPResponse(status: 500, body: Array("500 internal error: no response\n".utf8))
        let queued = queue(response, on: connection, sendsBody: pending.sendsBody, context: context)
        context.resumedNotQueued.subtract(1, ordering: .releasing)
        if queued == MHD_Result.YES {
            pending.queued.store(true, ordering: .releasing)
            context.responsesInFlight.add(1, ordering: .releasing)
        }
        return queued
    }
    func header(_ name: String) -> String? {
        MHD_lookup_connection_value(connection, MHD_ValueKind.HEADER_KIND, name).map { String(cString: $0) }
    }
    var fields = HeaderFieldSurvey()
    let counted = withUnsafeMutablePointer(to: &fields) { survey in
        MHD_get_connection_values(connection, MHD_ValueKind.HEADER_KIND, surveyHeaderField, survey)
    }
    var request = HTTPRequest(
        method: method.map { String(cString: $0) } ?? "",
        path: url.map { String(cString: $0) } ?? "",
        acceptEncoding: header("Accept-Encoding"),
        accept: header("Accept"),
        version: version.map { String(cString: $0) } ?? "",
        hostFields: counted < 0 ? 0 : fields.hosts,
        malformedFieldName: fields.malformed)
    if context.checksClientCertificates {
        var reason = [CChar](repeating: 0, count: 256)
        switch cmhd_client_certificate(connection, &reason, reason.count) {
        case 1: request.clientCertificate = .verified
        case 0: request.clientCertificate = .none
        case -1: request.clientCertificate = .rejected(reason: String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default: break
        }
    }
    var address = [CChar](repeating: 0, count: 64)
    if cmhd_client_address(connection, &address, address.count) == 0 {
        request.clientAddress = String(decoding: address.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    if context.readsCredentials, let authorization = MHD_lookup_connection_value(connection, MHD_ValueKind.HEADER_KIND, "Authorization") {
        request.credentials = BasicCredentials(authorization: Array(UnsafeRawBufferPointer(start: authorization, count: strlen(authorization))))
    }
    let sendsBody = request.method != "HEAD"
    func answerNow(_ response: HTTPResponse) -> MHD_Result {
        let queued = queue(response, on: connection, sendsBody: sendsBody, context: context)
        if queued == MHD_Result.YES {
            requestState.pointee = RequestState.responseQueued.pointer
            context.responsesInFlight.add(1, ordering: .releasing)
        }
        return queued
    }
    switch context.handler(request) {
    case .now(let response):
        return answerNow(response)
    case .later(let worker, let delay, let whenBusy, let compute):
        let pending = PendingReply(connection: connection, sendsBody: sendsBody)
        // The server is stopping: nothing may wait for a worker any more.
        guard context.startWaiting(pending) else { return answerNow(whenBusy()) }
        // Released in requestCompleted.
        requestState.pointee = Unmanaged.passRetained(pending).toOpaque()
        MHD_suspend_connection(connection)
        if !worker.submit(after: delay, { context.finish(pending, with: compute()) }) {
            context.finish(pending, with: whenBusy())
        }
        return MHD_Result.YES
    }
}

/// Queues `reply` on `connection`. Zero copy: MHD sends from the shared buffers (an I/O vector
/// when the body is in pieces) and calls releasePayload when done with them.
///
/// Over TLS the response's records leave in one write (CGnuTLSShims): libmicrohttpd would
/// send the header, then each 16 kB record of the body, as writes of their own.
private func queue(_ reply: HTTPResponse, on connection: OpaquePointer, sendsBody: Bool, context: ServerContext) -> MHD_Result {
    let payload = Unmanaged.passRetained(reply.payload)
    let vector = reply.payload.chunks.map { MHD_IoVec(iov_base: $0.baseAddress, iov_len: $0.count) }
    // MHD copies the vector (not the bytes) into the response.
    let response = vector.withUnsafeBufferPointer { vector in
        MHD_create_response_from_iovec(vector.baseAddress, UInt32(vector.count), releasePayload, payload.toOpaque())
    }
    guard let response else {
        payload.release()
        context.logger.error("cannot create an HTTP response (out of memory)")
        return MHD_Result.NO
    }
    defer { MHD_destroy_response(response) }
    var headers = reply.headers
    if context.retiring.load(ordering: .acquiring) { headers.append(("Connection", "close")) }
    for (name, value) in headers where MHD_add_response_header(response, name, value) != MHD_Result.YES {
        context.logger.error("cannot add an HTTP response header", ["header": name])
    }
    if context.servesTLS && sendsBody && reply.payload.count > 0 {
        // libmicrohttpd sends each piece of the body in records of at most 16 kB.
        let records = reply.payload.chunks.reduce(0) { $0 + ($1.count + tlsRecordCapacity - 1) / tlsRecordCapacity }
        cgt_hold_next_response(cmhd_connection_socket(connection), records)
    }
    let queued = MHD_queue_response(connection, UInt32(reply.status), response)
    // Not queued: libmicrohttpd closes the connection, and nothing of it may be held.
    if queued != MHD_Result.YES && context.servesTLS { cgt_forget(cmhd_connection_socket(connection)) }
    return queued
}

/// The most plaintext a TLS record carries (RFC 8446 5.1).
private let tlsRecordCapacity = 16_384

/// What `surveyHeaderField` finds among a request's header fields.
private struct HeaderFieldSurvey {
    var hosts = 0
    var malformed = false
}

/// Counts Host fields and spots names with whitespace (libmicrohttpd keeps `Host : x` as a
/// field named "Host " instead of rejecting it).
private let surveyHeaderField: MHD_KeyValueIterator = { cls, _, key, _ in
    guard let cls, let key else { return MHD_Result.YES }
    let survey = cls.assumingMemoryBound(to: HeaderFieldSurvey.self)
    // Bytes, not a String: this runs for every field of every request.
    let name = UnsafeRawBufferPointer(start: key, count: strlen(key))
    let isWhitespace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
    if name.contains(where: isWhitespace) { survey.pointee.malformed = true }
    var end = name.count
    while end > 0 && isWhitespace(name[end - 1]) { end -= 1 }
    if name.prefix(end).equalsIgnoringASCIICase(hostFieldName) { survey.pointee.hosts += 1 }
    return MHD_Result.YES
}

private let hostFieldName = Array("host".utf8)

/// Called by MHD for each connection it starts serving (sets the send buffer, and the TLS
/// transport that writes a response's records at once), and again when it closes (counts it
/// for the acceptor).
private let connectionStarted: MHD_NotifyConnectionCallback = { cls, connection, _, code in
    guard let cls, let connection else { return }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    guard code == .CONNECTION_NOTIFY_STARTED else {
        if context.servesTLS { cgt_forget(cmhd_connection_socket(connection)) }
        context.countClosedConnection()
        return
    }
    if context.servesTLS {
        if let session = cmhd_tls_session(connection) {
            cgt_install_transport(UnsafeMutableRawPointer(session))
        } else {
            // Only the number of records and writes depends on it.
            context.logger.debug("a TLS connection has no TLS session to give a transport")
        }
    }
    var bytes = context.sendBufferBytes
    let socket = cmhd_connection_socket(connection)
    if socket < 0 || setsockopt(socket, SOL_SOCKET, SO_SNDBUF, &bytes, socklen_t(MemoryLayout<Int32>.size)) != 0 {
        // Only how evenly large bodies are shared depends on it; the connection works as it is.
        let code = socket < 0 ? EBADF : errno
        context.logger.debug("cannot set a connection's send buffer size", ["error": SystemError.reason(code)])
    }
}

/// Called by MHD when a response no longer needs its body.
private let releasePayload: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    Unmanaged<SharedBytes>.fromOpaque(cls).release()
}

/// Called when MHD is done with a request (sent, failed or timed out).
private let requestCompleted: MHD_RequestCompletedCallback = { cls, _, requestState, _ in
    guard let cls, let requestState, let raw = requestState.pointee else { return }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    if let state = RequestState.of(raw) {
        if state == .responseQueued { context.responsesInFlight.subtract(1, ordering: .releasing) }
    } else {
        let pending = Unmanaged<PendingReply>.fromOpaque(raw).takeRetainedValue()
        if pending.queued.load(ordering: .acquiring) { context.responsesInFlight.subtract(1, ordering: .releasing) }
    }
    requestState.pointee = nil
}

/// Paths are matched exactly as sent: `/%6detrics` or `/%00` is not `/metrics` or `/`, and a
/// decoded NUL can never cut a path short.
private let keepPercentEscapes: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, UnsafeMutablePointer<CChar>?) -> Int = { _, _, text in
    text.map { strlen($0) } ?? 0
}

/// Routes libmicrohttpd's own messages (malformed requests, resource limits) to our log.
private let mhdLogger: MHD_LogCallback = { cls, format, arguments in
    guard let cls, let format, let arguments else { return }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    var buffer = [CChar](repeating: 0, count: 512)
    let count = buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, arguments) }
    guard count >= 0 else { return }
    let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingTrailingWhitespace()
    context.logger.info("libmicrohttpd: \(message)")
}
