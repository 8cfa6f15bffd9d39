/// libFuzzer entry point for the web config loader (built by scripts/fuzz.sh).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebConfig(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    FuzzHarness.webConfig(data.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
