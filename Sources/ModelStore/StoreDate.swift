import Foundation
import GRDB
import ModeldAPI

/// Dates in the store, in GRDB's own text form (`yyyy-MM-dd HH:mm:ss.SSS`, UTC), formatted and read with the
/// C library. GRDB converts through `DateFormatter` and `Calendar`, which load ICU's data into the daemon
/// (about 4 MB of RSS) the first time a pull writes its version.
enum StoreDate {
    /// `2026-11-22 03:04:05.678`.
    static func text(_ date: Date) -> String {
        let milliseconds = Int((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        return UTCTime(seconds: seconds).dateTime(separator: " ") + "." + UTCTime.padded(milliseconds - seconds * 1000, 3)
    }

    /// A date written by ``text(_:)`` or by GRDB (`yyyy-MM-dd HH:mm:ss` with optional `.SSS`); anything else
    /// goes to GRDB's own reading.
    static func date(_ value: DatabaseValue) -> Date? {
        guard let string = String.fromDatabaseValue(value) else { return Date.fromDatabaseValue(value) }
        let bytes = Array(string.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard bytes.count == 19 || bytes.count == 23, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            bytes[10] == UInt8(ascii: " "), bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
            bytes.count == 19 || bytes[19] == UInt8(ascii: "."),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19), (1...12).contains(month), (1...31).contains(day),
            hour < 24, minute < 60, second < 61
        else { return Date.fromDatabaseValue(value) }
        let milliseconds = bytes.count == 23 ? number(20..<23) : 0
        guard let milliseconds else { return Date.fromDatabaseValue(value) }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)) + TimeInterval(milliseconds) / 1000)
    }
}

extension StoreDate {
    static let encoding = DatabaseDateEncodingStrategy.custom { text($0) }
    static let decoding = DatabaseDateDecodingStrategy.custom { date($0) }
}

// The records with dates convert them with ``StoreDate``.
extension ModelRecord {
    package static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { StoreDate.encoding }
    package static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { StoreDate.decoding }
}

extension VersionRecord {
    package static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { StoreDate.encoding }
    package static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { StoreDate.decoding }
}

extension RunRecord {
    package static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { StoreDate.encoding }
    package static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { StoreDate.decoding }
}

extension APIKeyRecord {
    package static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { StoreDate.encoding }
    package static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { StoreDate.decoding }
}
