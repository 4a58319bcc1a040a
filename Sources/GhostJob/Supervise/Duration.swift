/// Durations as batch users write them: "90s", "30m", "2h", "1d", "1h30m",
/// "1.5h"; a bare number is seconds.
public enum Duration {
    public static func parse(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let plain = Double(text) { return plain > 0 ? plain : nil }
        var total = 0.0, number = ""
        for c in text {
            if c.isNumber || c == "." { number.append(c); continue }
            guard let u = units[c], let v = Double(number) else { return nil }
            total += v * u
            number = ""
        }
        guard number.isEmpty, total > 0 else { return nil }
        return total
    }
}
