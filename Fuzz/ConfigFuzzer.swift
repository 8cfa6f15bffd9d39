/// libFuzzer entry point for the config loader (built by scripts/fuzz.sh).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    FuzzHarness.config(data.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
