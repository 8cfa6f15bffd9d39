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
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        let status: Int32 = output.withUnsafeMutableBufferPointer { destination in
                // zlib does not write through next_in; the C API just lacks const.
                stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
                stream.avail_in = uInt(input.count)
                stream.next_out = destination.baseAddress
                stream.avail_out = uInt(destination.count)
                return deflate(&stream, Z_FINISH)
        }
        guard status == Z_STREAM_END else { return nil }
        output.removeSubrange(Int(stream.total_out)...)
        return output
    }
}
