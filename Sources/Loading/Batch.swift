import Ingest

/// What one commit is handed: complete files, records without provenance, Kafka lines with
/// their spans. Moved to its commit thread, never shared.
struct Batch {
    let files: [PendingFile]
    /// Fixed for the batch, not per attempt: a retry names the same checkpoint and the same
    /// dead-letter file as the attempt before it.
    let token: String
    let deadLetterStamp: String

    init(files: [PendingFile]) {
        self.files = files
        token = randomToken()
        deadLetterStamp = UTCTimestamp.now().compactStamp
    }

    /// `files` under `batch`'s names (the fenced batch trimmed).
    init(files: [PendingFile], as batch: Batch) {
        self.files = files
        token = batch.token
        deadLetterStamp = batch.deadLetterStamp
    }

    /// A batch its commit thread handed back, rolled back: another commit moved one of its
    /// Kafka partitions (`fence`). Only the reading thread may trim its lines.
    struct Fenced {
        var fence: KafkaFence
        var batch: Batch
    }
}

/// When the lines waiting become a batch (docs/loading.md, "Batches at file boundaries").
struct BatchPolicy {
    /// Commit once this many rows are waiting.
    var rows: Int
    /// Commit once the complete files waiting hold this many bytes in memory.
    var memory: Int
    /// Commit at the latest this long after the oldest waiting row arrived.
    var maxDelay: Double

    init(_ config: LoaderConfiguration) {
        rows = config.batchRows
        memory = config.batchMemory
        maxDelay = config.maxDelay
    }

    func isFull(rows waiting: Int, resident: Int) -> Bool { waiting >= rows || resident >= memory }

    func isOverdue(oldest: Double?, now: Double) -> Bool { oldest.map { now - $0 >= maxDelay } ?? false }

    /// How long an empty pipe is waited on before the stream counts as quiet (and commits at
    /// once): Kafka lines arrive as one continuous stream through a 64 KiB pipe, where an empty
    /// pipe for an instant is back-pressure, not quiet; waiting briefly keeps batches large.
    func quietAfterMilliseconds(kafka: Bool) -> Int32 { kafka ? 50 : 0 }

    /// The complete files that may share this batch, and those for a later one: two versions of
    /// one name (a file appended to between two reads) never share a batch; the later one waits
    /// for the next, where it is judged against the committed one.
    static func split(_ ready: [PendingFile]) -> (now: [PendingFile], later: [PendingFile]) {
        var now: [PendingFile] = []
        var later: [PendingFile] = []
        var versions: [String: FileFingerprint] = [:]
        for file in ready {
            if let fingerprint = file.fingerprint, let first = versions[fingerprint.name], first != fingerprint {
                later.append(file)
            } else {
                if let fingerprint = file.fingerprint, versions[fingerprint.name] == nil { versions[fingerprint.name] = fingerprint }
                now.append(file)
            }
        }
        return (now, later)
    }
}

/// 32 random hex digits (128 bits), from two draws of the system's generator (one
/// `getrandom` each, not one per digit).
func randomToken() -> String {
    var g = SystemRandomNumberGenerator()
    let hex = Array("0123456789abcdef".utf8)
    var digits: [UInt8] = []
    digits.reserveCapacity(32)
    for _ in 0..<2 {
        var word = g.next()
        for _ in 0..<16 {
            digits.append(hex[Int(word & 0xF)])
            word >>= 4
        }
    }
    return String(decoding: digits, as: UTF8.self)
}
