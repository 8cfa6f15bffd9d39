/// libFuzzer entry point for barman JSON decoding (built by scripts/fuzz.sh).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBarmanJSON(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    FuzzHarness.barmanJSON(data.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
