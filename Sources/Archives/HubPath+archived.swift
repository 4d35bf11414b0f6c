import Hubs

extension HubPath {
    /// A file path from an archive, an adopted cache or a directory, checked as a hub gives one.
    /// - Throws: ``ArchiveError`` (`unsafeEntry`) saying what is wrong with the path.
    init(archived value: String, repo: String) throws {
        do {
            self = try HubPath(value, repo: repo)
        } catch let error as PullError {
            throw ArchiveError(.unsafeEntry, error.message)
        }
    }
}
