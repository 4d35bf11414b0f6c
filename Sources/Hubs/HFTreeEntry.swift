/// One file of a Hugging Face repository tree (docs/design/hubs.md, Tree endpoint).
package struct HFTreeEntry: Sendable, Hashable, Decodable {
    package struct LFS: Sendable, Hashable, Decodable {
        package var oid: String
        package var size: Int64
    }

    package var type: String
    package var oid: String?
    package var size: Int64?
    package var path: String
    package var lfs: LFS?
}
