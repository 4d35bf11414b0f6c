import FoundationEssentials
import Glibc

/// A moment's calendar fields in UTC, from the C library (`gmtime_r`). Foundation's date formatting loads ICU's
/// calendar and locale data (several MB of RSS) into the daemon, so the wire, store and HTTP dates are written
/// from these fields instead.
package struct UTCTime {
    package let year: Int
    /// 1 to 12.
    package let month: Int
    package let day: Int
    package let hour: Int
    package let minute: Int
    package let second: Int
    /// 0 is Sunday.
    package let weekday: Int

    /// - Parameter seconds: since 1970-01-01T00:00:00Z.
    package init(seconds: Int) {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        year = Int(parts.tm_year) + 1900
        month = Int(parts.tm_mon) + 1
        day = Int(parts.tm_mday)
        hour = Int(parts.tm_hour)
        minute = Int(parts.tm_min)
        second = Int(parts.tm_sec)
        weekday = Int(parts.tm_wday)
    }

    /// `yyyy-MM-dd`, `separator`, `HH:mm:ss`.
    package func dateTime(separator: String) -> String {
        "\(Self.padded(year, 4))-\(Self.padded(month, 2))-\(Self.padded(day, 2))\(separator)"
            + "\(Self.padded(hour, 2)):\(Self.padded(minute, 2)):\(Self.padded(second, 2))"
    }

    /// `value` with leading zeros to `width` digits.
    package static func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
