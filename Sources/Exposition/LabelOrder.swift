/// Series order: label values compared left to right; a value of digits only compares by its
/// numeric value with another such value, so `number="2"` comes before `number="10"`; the
/// output is deterministic.
package enum LabelOrder {
    /// Sorts in time linear in the number of samples: each distinct value of a label is ranked
    /// once (a family has few: its servers, its backup numbers, its check names), then the
    /// samples are ordered by their ranks with a stable counting sort per label, last label
    /// first (LSD radix sort). Comparing whole label arrays sample against sample cost more
    /// than half of a render and grew as n log n.
    static func sorted(_ samples: [Sample]) -> [Sample] {
        guard samples.count > 1, let width = samples.first?.labelValues.count, width > 0,
              samples.allSatisfy({ $0.labelValues.count == width }) else { return samples }
        var order = Array(samples.indices)
        for position in (0..<width).reversed() {
            let (ranks, distinct) = ranks(of: samples, at: position)
            guard distinct > 1 else { continue }
            var starts = [Int](repeating: 0, count: distinct + 1)
            for index in order { starts[ranks[index] + 1] += 1 }
            for rank in 0..<distinct { starts[rank + 1] += starts[rank] }
            var next = order
            for index in order {
                next[starts[ranks[index]]] = index
                starts[ranks[index]] += 1
            }
            order = next
        }
        return order.map { samples[$0] }
    }

    /// Per sample, the rank of its value at `position` among the distinct values there, and
    /// how many there are. Values are told apart by their bytes, like server names.
    private static func ranks(of samples: [Sample], at position: Int) -> (ranks: [Int], distinct: Int) {
        var provisional: [ExactString: Int] = [:]
        var values: [String] = []
        let firstSeen = samples.map { sample -> Int in
            let value = sample.labelValues[position]
            if let known = provisional[ExactString(value)] { return known }
            provisional[ExactString(value)] = values.count
            values.append(value)
            return values.count - 1
        }
        let keys = values.map(Key.init)
        let ordered = keys.indices.sorted { lessKeys([keys[$0]], [keys[$1]]) }
        var rankOfFirstSeen = [Int](repeating: 0, count: values.count)
        for (rank, index) in ordered.enumerated() { rankOfFirstSeen[index] = rank }
        return (firstSeen.map { rankOfFirstSeen[$0] }, values.count)
    }

    struct Key {
        let number: Int?
        let text: String
        init(_ text: String) {
            self.text = text
            let digits = !text.isEmpty && text.utf8.count < 19 && text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            number = digits ? Int(text) : nil
        }
    }

    static func lessKeys(_ lhs: [Key], _ rhs: [Key]) -> Bool {
        for (left, right) in zip(lhs, rhs) {
            if left.text == right.text {
                // Canonically equivalent is not the same name ("e\u{301}", "\u{E9}"): bytes decide.
                if left.text.hasSameUTF8(as: right.text) { continue }
                return left.text.utf8.lexicographicallyPrecedes(right.text.utf8)
            }
            // Equal numbers written differently ("2", "02") fall through to the text: a total order.
            if let a = left.number, let b = right.number, a != b { return a < b }
            return left.text < right.text
        }
        return lhs.count < rhs.count
    }
}
