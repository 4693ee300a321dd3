import Ingest
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What becomes of a committed batch's source files in the incoming folder: archived, deleted
/// or journaled (`AfterCommit`), or moved to quarantine (over the reject threshold, or a changed
/// version of a committed file). Only the version that was committed is ever moved.
///
/// Runs under ``BatchReporter``'s lock, on whichever thread committed the batch.
struct FileDisposition: Sendable {
    let incoming: ContainedFolder
    let afterCommit: AfterCommit
    let quarantine: Quarantine
    /// Released once a file has left the folder (`watch --shared`).
    let claims: FileClaims
    let logger: Logger

    func apply(_ outcome: BatchOutcome, totals: inout LoaderTotals) {
        for file in outcome.files {
            guard let identity = file.fingerprint else { continue }
            if let quarantined = file.quarantine {
                totals.filesQuarantined += 1
                moveChanged(identity, quarantined)
                continue
            }
            if file.skipped, file.quarantined == nil, case .keep = afterCommit { continue }  // journaled when first committed
            guard let source = incoming.child(identity.name) else {
                logger.warning(
                    "not moving \(quotedForMessage(identity.name)): \(ContainedFolder.problem(with: identity.name) ?? "unsafe name") (load only touches plain names in \(incoming.path))"
                )
                continue
            }
            guard identity.isStill(at: source) else {
                // Absent (replayed from elsewhere), or appended to or replaced since it was read:
                // not the version committed, so not ours to move.
                continue
            }
            if let refusal = file.quarantined {
                admitRefused(identity, source: source, refusal: refusal, skipped: file.skipped)
            } else {
                dispose(identity, source: source)
            }
        }
    }

    /// A changed version of a committed file: not loaded, moved to quarantine.
    private func moveChanged(_ identity: FileFingerprint, _ quarantined: QuarantinedFile) {
        guard let source = incoming.child(identity.name), access(source, F_OK) == 0 else {
            logger.warning(
                "\(quarantined.detail) Not loaded (quarantine: \(quarantined.reason); the file is not in \(incoming.path), so nothing was moved)"
            )
            return
        }
        do {
            let moved = try ChangedFile.move(source, quarantined, into: quarantine.folder)
            claims.release(identity.name)
            logger.warning("\(quarantined.detail) Not loaded: moved to \(moved) (\(quarantined.reason))")
        } catch {
            logger.error("\(identity.name): not loaded (\(quarantined.reason)), and not moved to quarantine: \(error)")
        }
    }

    /// A file over the reject threshold (now, or when it was first seen): into quarantine.
    private func admitRefused(_ identity: FileFingerprint, source: String, refusal: String, skipped: Bool) {
        do {
            let moved = try quarantine.admit(
                path: source, name: identity.name, reason: skipped ? "already quarantined" : "too many rejects", detail: refusal)
            logger.warning("\(identity.name): quarantined: \(refusal); moved to \(moved)")
        } catch {
            logger.error("\(identity.name): quarantined, but \(error)")
        }
    }

    /// A committed file: archived, deleted or journaled.
    private func dispose(_ identity: FileFingerprint, source: String) {
        do {
            switch afterCommit {
            case .archive(let folder):
                let moved = try SourceFile.move(source, into: folder, name: identity.name)
                claims.release(identity.name)
                logger.debug("archived \(source) to \(moved)")
            case .delete:
                if unlink(source) != 0 { throw SystemError("unlink", errno: errno, path: source) }
                claims.release(identity.name)
            case .keep:
                try SourceFile.appendJournal(folder: incoming, file: identity)
            }
        } catch {
            logger.error("\(identity.name): committed, but \(error)")
        }
    }
}
