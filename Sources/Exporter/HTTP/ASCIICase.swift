extension Collection<UInt8> {
    /// Whether these bytes spell `word` in any ASCII case, as HTTP compares field names and
    /// auth schemes. `word` must be lowercase letters: `| 0x20` lowercases an ASCII letter, and
    /// no other byte becomes a letter by it.
    func equalsIgnoringASCIICase(_ word: [UInt8]) -> Bool {
        count == word.count && zip(self, word).allSatisfy { $0 | 0x20 == $1 }
    }
}
