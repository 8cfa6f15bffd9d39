import CZlib

/// The zlib adapter: one-shot gzip of a rendered body. The only file that sees zlib.
public enum Gzip {
    /// The gzip member (RFC 1952) of `input`, or nil if zlib fails (then the body goes uncompressed).
    public static func compress(_ input: [UInt8], level: Int32 = 6) -> [UInt8]? {
        input.withUnsafeBytes { compress($0, level: level) }
    }

    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 6) -> [UInt8]? {
        var stream = z_stream()
        // deflateInit2 is a macro; windowBits 15 + 16 selects the gzip wrapper.
        let initialized = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initialized == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        let status = deflated(into: Int(deflateBound(&stream, uLong(input.count)))) { destination in
            // zlib does not write through next_in; the C API just lacks const.
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = uInt(input.count)
            stream.next_out = destination.baseAddress
            stream.avail_out = uInt(destination.count)
            let status = deflate(&stream, Z_FINISH)
            return (status, status == Z_STREAM_END ? Int(stream.total_out) : 0)
        }
        return status.result == Z_STREAM_END ? status.output : nil
    }

    /// Runs `deflate` into a buffer of `bound` bytes and returns what it wrote in an array of
    /// that size: the buffer is neither zero-filled (its untouched pages never become resident)
    /// nor kept (a segment kept for a snapshot's life would otherwise hold the whole bound, about
    /// the size of the text, for a tenth of it).
    private static func deflated(into bound: Int, _ run: (UnsafeMutableBufferPointer<UInt8>) -> (result: Int32, written: Int)) -> (result: Int32, output: [UInt8]) {
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bound, 1))
        defer { buffer.deallocate() }
        let (result, written) = run(buffer)
        return (result, Array(buffer[0..<min(max(written, 0), buffer.count)]))
    }
}

extension Gzip {
    /// A piece of a body compressed on its own: raw deflate ending on a byte boundary (a full
    /// flush, no final block), so pieces compressed at different times can be joined into one
    /// gzip member (`join`), with the CRC and length that member's trailer needs.
    public struct Segment: Sendable {
        let deflated: [UInt8]
        let crc: UInt
        /// The length of the content.
        public let length: Int
    }

    /// `input` as a segment; nil if zlib fails.
    public static func segment(_ input: [UInt8], level: Int32 = 6) -> Segment? {
        input.withUnsafeBytes { segment(pieces: [$0], level: level) }
    }

    /// The content of `pieces`, one after the other, as one segment (deflated as one stream,
    /// without joining them first); nil if zlib fails.
    public static func segment(pieces: [UnsafeRawBufferPointer], level: Int32 = 6) -> Segment? {
        var stream = z_stream()
        // Raw deflate (windowBits -15): no header or trailer; `join` writes gzip's.
        guard deflateInit2_(&stream, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        let pieces = pieces.filter { $0.count > 0 }.map { $0.bindMemory(to: UInt8.self) }
        let length = pieces.reduce(0) { $0 + $1.count }
        // A full flush ends with an empty stored block (5 bytes) beyond deflateBound's estimate.
        let (status, output) = deflated(into: Int(deflateBound(&stream, uLong(length))) + 16) { destination in
            stream.next_out = destination.baseAddress
            stream.avail_out = uInt(destination.count)
            for piece in pieces {
                stream.next_in = UnsafeMutablePointer(mutating: piece.baseAddress)
                stream.avail_in = uInt(piece.count)
                let status = deflate(&stream, Z_NO_FLUSH)
                guard status == Z_OK, stream.avail_in == 0 else { return (status == Z_OK ? Z_BUF_ERROR : status, 0) }
            }
            // The full flush ends the segment on a byte boundary (with no content, it is all of it).
            let status = deflate(&stream, Z_FULL_FLUSH)
            return (status, status == Z_OK ? Int(stream.total_out) : 0)
        }
        guard status == Z_OK else { return nil }
        let crc = pieces.reduce(crc32(0, nil, 0)) { crc32($0, $1.baseAddress, uInt($1.count)) }
        return Segment(deflated: output, crc: crc, length: length)
    }

    /// `input` as a segment of stored (uncompressed) deflate blocks: no compression work at all,
    /// for the small parts of a body that change every second.
    public static func storedSegment(_ input: [UInt8]) -> Segment {
        var output: [UInt8] = []
        output.reserveCapacity(input.count + (input.count / 65535 + 1) * 5)
        var start = 0
        repeat {
            let length = min(65535, input.count - start)
            // BFINAL 0, BTYPE 00 (stored), padded to the byte; then LEN and its complement.
            output.append(contentsOf: [0x00, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)])
            output.append(contentsOf: input[start..<(start + length)])
            start += length
        } while start < input.count
        let crc = input.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        return Segment(deflated: output, crc: crc, length: input.count)
    }

    /// One gzip member (RFC 1952) whose content is the segments' content in order.
    public static func join(_ segments: [Segment]) -> [UInt8] {
        var output: [UInt8] = [0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]
        output.reserveCapacity(segments.reduce(20) { $0 + $1.deflated.count })
        var crc: UInt = 0
        var length = 0
        for segment in segments {
            output.append(contentsOf: segment.deflated)
            crc = crc32_combine(crc, segment.crc, off_t(segment.length))
            length += segment.length
        }
        // The final block: an empty block of fixed Huffman codes with BFINAL set.
        output.append(contentsOf: [0x03, 0x00])
        for shift in stride(from: 0, to: 32, by: 8) { output.append(UInt8(truncatingIfNeeded: UInt32(truncatingIfNeeded: crc) >> UInt32(shift))) }
        for shift in stride(from: 0, to: 32, by: 8) { output.append(UInt8(truncatingIfNeeded: UInt32(truncatingIfNeeded: length) >> UInt32(shift))) }
        return output
    }

    /// The content of a gzip member, or nil when it is not one (tests compare bodies with it).
    public static func decompress(_ input: [UInt8]) -> [UInt8]? {
        // windowBits 15 + 16: a gzip member, header and trailer checked.
        inflated(input, windowBits: 15 + 16)
    }

    /// The content of a segment, or nil if zlib fails: a body kept only compressed gives its
    /// text back this way when a scraper asks for it plain.
    public static func content(of segment: Segment) -> [UInt8]? {
        var inflatedWhole = false
        let text = [UInt8](unsafeUninitializedCapacity: segment.length) { buffer, initialized in
            inflatedWhole = Gzip.content(of: segment, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = inflatedWhole ? segment.length : 0
        }
        return inflatedWhole ? text : nil
    }

    /// Inflates `segment` into `destination`, which must hold exactly its `length` bytes (no
    /// growing array, no copy); false if zlib fails or the content is not that long. Raw
    /// deflate without a final block: inflate stops when the input ends.
    public static func content(of segment: Segment, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard destination.count == segment.length else { return false }
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
        defer { inflateEnd(&stream) }
        return segment.deflated.withUnsafeBytes { source in
            stream.next_in = UnsafeMutablePointer(mutating: source.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = uInt(source.count)
            // One spare byte: content beyond `length` would fill it, and is refused.
            var spare: UInt8 = 0
            stream.next_out = destination.bindMemory(to: UInt8.self).baseAddress
            stream.avail_out = uInt(destination.count)
            var status = destination.isEmpty ? Z_OK : inflate(&stream, Z_SYNC_FLUSH)
            guard status == Z_OK || status == Z_BUF_ERROR, stream.avail_out == 0 else { return false }
            status = withUnsafeMutablePointer(to: &spare) { spare in
                stream.next_out = spare
                stream.avail_out = 1
                return inflate(&stream, Z_SYNC_FLUSH)
            }
            // All input consumed and nothing more produced: exactly `length` bytes.
            return stream.avail_in == 0 && stream.avail_out == 1 && (status == Z_OK || status == Z_BUF_ERROR)
        }
    }

    private static func inflated(_ input: [UInt8], windowBits: Int32) -> [UInt8]? {
        var stream = z_stream()
        guard inflateInit2_(&stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 4)
        var chunk = [UInt8](repeating: 0, count: 65536)
        return input.withUnsafeBytes { source -> [UInt8]? in
            stream.next_in = UnsafeMutablePointer(mutating: source.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = uInt(input.count)
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { destination -> (Int32, Int) in
                    stream.next_out = destination.baseAddress
                    stream.avail_out = uInt(destination.count)
                    let status = inflate(&stream, Z_NO_FLUSH)
                    return (status, destination.count - Int(stream.avail_out))
                }
                output.append(contentsOf: chunk[0..<produced])
                if status == Z_STREAM_END { return output }
                guard status == Z_OK else { return nil }
            }
        }
    }
}
