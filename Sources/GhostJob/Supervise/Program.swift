import Glibc

/// Finding the program to run the way a shell does.
public enum Program {
    public enum Resolution { case found(String), notFound, notExecutable(String) }

    public static func resolve(_ name: String) -> Resolution {
        if name.contains("/") { return check(name) ?? .notFound }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        var sawNonExec: String? = nil
        for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + name
            switch check(candidate) {
            case .found(let p)?: return .found(p)
            case .notExecutable(let p)?: sawNonExec = sawNonExec ?? p
            default: continue
            }
        }
        return sawNonExec.map { .notExecutable($0) } ?? .notFound
    }

    private static func check(_ p: String) -> Resolution? {
        var st = stat()
        guard stat(p, &st) == 0 else { return nil }
        if st.st_mode & S_IFMT == S_IFDIR || access(p, X_OK) != 0 { return .notExecutable(p) }
        return .found(p)
    }
}

/// Where images go when the user does not say.
public enum ImageDirectory {
    public static func defaultPath(program: String) -> String {
        if let id = getenv("SLURM_JOB_ID") { return "ghost-images/" + String(cString: id) }
        let base = program.split(separator: "/").last.map(String.init) ?? "job"
        return "ghost-images/" + base
    }
}
