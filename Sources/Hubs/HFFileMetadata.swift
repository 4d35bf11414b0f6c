/// What a `HEAD /{repo}/resolve/{commit}/{path}` says about a file (docs/design/hubs.md, File metadata).
package struct HFFileMetadata: Sendable, Hashable {
    package var commit: String
    /// sha256 (LFS) or git sha1 (regular file).
    package var etag: String
    package var size: Int64
    /// Where to GET the bytes: the redirect's `Location`, else the resolve URL.
    package var downloadURL: String
    package var hashKind: HashKind { etag.count == 64 ? .sha256 : .gitSHA1 }
}
