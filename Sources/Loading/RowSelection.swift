import Ingest

/// Which of a file's records an isolation step takes, by index in arrival order (the order of
/// its `recordLines` and of its `copyRows` tuples). Index lists are ascending.
enum RowSelection {
    case none
    case all
    case only([Int])
    case allBut([Int])

    var isEmpty: Bool {
        switch self {
        case .none: true
        case .only(let rows): rows.isEmpty
        case .all, .allBut: false
        }
    }

    /// How many of a file's `records` are taken.
    func count(of records: Int) -> Int {
        switch self {
        case .none: 0
        case .all: records
        case .only(let rows): rows.count
        case .allBut(let rows): records - rows.count
        }
    }

    /// This selection without `rows` (ascending, each taken now).
    func removing(_ rows: [Int]) -> RowSelection {
        guard !rows.isEmpty else { return self }
        switch self {
        case .none: return .none
        case .all: return .allBut(rows)
        case .allBut(let left): return .allBut((left + rows).sorted())
        case .only(let taken):
            let gone = Set(rows)
            return .only(taken.filter { !gone.contains($0) })
        }
    }

    /// Answers "is row r taken?" for r asked in ascending order, in O(1) each.
    struct Cursor {
        private let list: [Int]
        private let taken: Bool
        private var next = 0

        init(_ selection: RowSelection) {
            switch selection {
            case .none: (list, taken) = ([], true)
            case .all: (list, taken) = ([], false)
            case .only(let rows): (list, taken) = (rows, true)
            case .allBut(let rows): (list, taken) = (rows, false)
            }
        }

        mutating func contains(_ row: Int) -> Bool {
            while next < list.count && list[next] < row { next += 1 }
            let listed = next < list.count && list[next] == row
            return listed == taken
        }
    }

    /// Calls `body` with the index and line of each record taken, in order.
    func forEachLine(of file: PendingFile, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        guard !isEmpty else { return }
        var cursor = Cursor(self)
        var row = 0
        try file.recordLines.forEachLine { bytes in
            defer { row += 1 }
            if cursor.contains(row) { try body(row, bytes) }
        }
    }
}
