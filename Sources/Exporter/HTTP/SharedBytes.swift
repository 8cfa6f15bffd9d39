/// Immutable bytes with stable addresses, shared by the exposition cache and every response that
/// sends them: libmicrohttpd sends straight from them (no copy per request) and releases its
/// reference when the response is done.
///
/// The bytes may be one buffer or pieces of other `SharedBytes` in order (`init(joining:)`): a
/// second's plain body is the snapshot template's fixed text with that second's few rendered
/// families between, sent as an I/O vector, so no whole body is ever copied together (9.8 MB a
/// second at 1,000 servers x 60 backups).
public final class SharedBytes: @unchecked Sendable {
    // @unchecked: the memory is written once in init and only read afterwards; `pieces` keeps
    // every joined buffer alive for as long as `chunks` points into it.
    /// The bytes, in order; none empty.
    let chunks: [UnsafeRawBufferPointer]
    private let owned: UnsafeMutableRawBufferPointer?
    private let pieces: [SharedBytes]
    public let count: Int

    /// A copy of `bytes` in a buffer of its own.
    public convenience init(_ bytes: [UInt8]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, let target = buffer.baseAddress { target.copyMemory(from: base, byteCount: source.count) }
        }
        self.init(owning: buffer, count: bytes.count)
    }

    /// `count` bytes written by `fill` straight into the buffer; nil when it fails.
    public convenience init?(count: Int, filling fill: (UnsafeMutableRawBufferPointer) -> Bool) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 1)
        guard fill(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])) else {
            buffer.deallocate()
            return nil
        }
        self.init(owning: buffer, count: count)
    }

    /// The first `count` bytes of `buffer`, which this object deallocates.
    private init(owning buffer: UnsafeMutableRawBufferPointer, count: Int) {
        owned = buffer
        pieces = []
        self.count = count
        chunks = count == 0 ? [] : [UnsafeRawBufferPointer(rebasing: buffer[0..<count])]
    }

    /// The bytes of `pieces` one after the other, without copying them.
    public init(joining pieces: [SharedBytes]) {
        let kept = pieces.filter { $0.count > 0 }
        owned = nil
        self.pieces = kept
        chunks = kept.flatMap(\.chunks)
        count = kept.reduce(0) { $0 + $1.count }
    }

    deinit { owned?.deallocate() }

    /// The bytes as one buffer: in place when they are one chunk, else joined in a copy.
    public func withContiguousBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        if chunks.count == 1 { return try body(chunks[0]) }
        return try bytes.withUnsafeBytes(body)
    }

    /// Whether `other` holds the same bytes, however either is cut into chunks.
    public func hasSameBytes(as other: SharedBytes) -> Bool {
        guard other.count == count else { return false }
        var theirs = other.chunks.makeIterator()
        var current = UnsafeRawBufferPointer(start: nil, count: 0)[...]
        for chunk in chunks {
            var mine = chunk[...]
            while !mine.isEmpty {
                if current.isEmpty {
                    guard let next = theirs.next() else { return false }
                    current = next[...]
                }
                let length = min(mine.count, current.count)
                guard mine.prefix(length).elementsEqual(current.prefix(length)) else { return false }
                mine = mine.dropFirst(length)
                current = current.dropFirst(length)
            }
        }
        return true
    }

    /// All the bytes in one array (a copy).
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for chunk in chunks { bytes.append(contentsOf: chunk) }
        return bytes
    }
}
