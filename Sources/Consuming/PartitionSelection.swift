import Kafka

/// How `consume` gets its partitions.
public enum PartitionAssignment: Sendable, Equatable {
    /// Joins this consumer group: Kafka splits the topic's partitions among the group's members
    /// and moves them when one joins, leaves or dies.
    case group(String)
    /// Reads these partitions itself, from start to exit: no group is joined, nothing moves.
    case partitions(PartitionSelection)
}

/// The partitions `consume --partitions` reads: `all`, or numbers and ranges (`0,3,5-7`).
public enum PartitionSelection: Sendable, Equatable, CustomStringConvertible {
    case all
    /// As written: each range's bounds within the topic are checked once its partition count is known.
    case listed([ClosedRange<Int32>])

    /// Parses `all` or comma-separated partition numbers and ranges (`0,3,5-7`).
    public init(parsing text: String) throws(PartitionSelectionError) {
        if text == "all" {
            self = .all
            return
        }
        var ranges: [ClosedRange<Int32>] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard let low = Self.number(bounds[0]), let high = bounds.count == 2 ? Self.number(bounds[1]) : low else {
                throw PartitionSelectionError("expected all, or partition numbers and ranges such as 0,3,5-7 (got '\(item)')")
            }
            guard low <= high else { throw PartitionSelectionError("the range \(item) runs backwards") }
            ranges.append(low...high)
        }
        self = .listed(ranges)
    }

    /// A partition number: ASCII digits only (no sign, no spaces).
    private static func number(_ text: Substring) -> Int32? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int32(text)
    }

    /// The selected partitions of `topic`, which has `count`: in order, each once. Throws
    /// naming the partitions the topic does not have.
    public func partitions(of topic: String, count: Int) throws(PartitionSelectionError) -> [TopicPartition] {
        let numbers: [Int32]
        switch self {
        case .all:
            numbers = Array(0..<Int32(count))
        case .listed(let ranges):
            let missing = ranges.filter { Int($0.upperBound) >= count }.map { max($0.lowerBound, Int32(count))...$0.upperBound }
            guard missing.isEmpty else { throw Self.notInTopic(missing, topic: topic, count: count) }
            numbers = Set(ranges.flatMap { $0 }).sorted()
        }
        return numbers.map { TopicPartition(topic: topic, partition: $0) }
    }

    private static func notInTopic(_ missing: [ClosedRange<Int32>], topic: String, count: Int) -> PartitionSelectionError {
        let has = count == 0 ? "it has none" : "its \(count) partitions are \(text(0...Int32(count - 1)))"
        return PartitionSelectionError("topic \(topic) has no partition \(missing.map(text).joined(separator: ",")) (\(has))")
    }

    private static func text(_ range: ClosedRange<Int32>) -> String {
        range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
    }

    public var description: String {
        switch self {
        case .all: "all"
        case .listed(let ranges): ranges.map(Self.text).joined(separator: ",")
        }
    }
}

/// A `--partitions` list that is not one, or names a partition the topic does not have.
public struct PartitionSelectionError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}
