/// One entry of a ModelScope file listing (docs/design/hubs.md, File listing).
package struct MSFileEntry: Sendable, Hashable, Decodable {
    package var name: String
    package var path: String
    package var type: String
    package var size: Int64
    package var sha256: String?
    /// The commit the file came from.
    package var revision: String?
    package var isLFS: Bool?

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case path = "Path"
        case type = "Type"
        case size = "Size"
        case sha256 = "Sha256"
        case revision = "Revision"
        case isLFS = "IsLFS"
    }
}
