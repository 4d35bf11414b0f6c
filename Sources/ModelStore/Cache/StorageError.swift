import Foundation
import Hubs

/// A write or open failure, as a disk-full error when it is one.
package func storageError(_ code: Int32, _ what: String) -> PullError {
    let reason = String(cString: strerror(code))
    if code == ENOSPC || code == EDQUOT {
        return PullError(.diskFull, "disk full: \(what): \(reason); free some space and pull again (the download resumes)")
    }
    return PullError(.storage, "\(what): \(reason)")
}
