// End-to-end test harness: builds the C test programs of Tests/programs,
// runs ghost-run and ghost-resume as subprocesses with pipes, waits for
// their output with timeouts, sends signals and collects exit statuses.
//
// Nothing here imports GhostJob: the CLIs are driven exactly as a user or a
// batch script would drive them.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Locations

enum Paths {
    /// The package root, three levels above this file (Tests/GhostJobTests/GhostHarness.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where ghost-run and ghost-resume are: $GHOST_BIN_DIR, else .build/debug.
    static var binDir: String {
        if let dir = ProcessInfo.processInfo.environment["GHOST_BIN_DIR"], !dir.isEmpty { return dir }
        return packageRoot + "/.build/debug"
    }

    static var ghostRun: String { binDir + "/ghost-run" }
    static var ghostResume: String { binDir + "/ghost-resume" }
    static var programsDir: String { packageRoot + "/Tests/programs" }
    static var mgsSource: String { packageRoot + "/examples/mgs/mgs.c" }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: - Building the C programs

/// Removed when the test process exits.
nonisolated(unsafe) private var programsDirToRemove: String?

/// Compiles each C program once per test run into one directory readable by
/// everyone (so an unprivileged user can run them too).
final class ProgramBuilder: @unchecked Sendable {
    static let shared = ProgramBuilder()

    private let lock = NSLock()
    private var built: [String: String] = [:]
    let outputDir: String

    private init() {
        outputDir = NSTemporaryDirectory().appending("ghost-test-programs-\(getpid())")
        mkdir(outputDir, 0o755)
        chmod(outputDir, 0o755)
        programsDirToRemove = outputDir
        atexit {
            if let dir = programsDirToRemove { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    /// Path of the executable built from Tests/programs/NAME.c.
    func program(_ name: String) throws -> String {
        try build(key: name, source: Paths.programsDir + "/\(name).c", extraFlags: ["-I", Paths.programsDir, "-pthread"])
    }

    /// Path of examples/mgs built like its Makefile does.
    func mgs() throws -> String {
        try build(key: "mgs", source: Paths.mgsSource, extraFlags: ["-std=c99"])
    }

    /// examples/mgs with OpenMP threads (its Makefile's mgs-omp).
    func mgsOMP() throws -> String {
        try build(key: "mgs-omp", source: Paths.mgsSource, extraFlags: ["-std=c99", "-fopenmp"])
    }

    private func build(key: String, source: String, extraFlags: [String]) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let path = built[key] { return path }
        let out = outputDir + "/" + key
        let cc = ProcessInfo.processInfo.environment["CC"] ?? "cc"
        let args = ["-O2", "-Wall"] + extraFlags + ["-o", out, source, "-lm"]
        let result = try runToCompletion("/usr/bin/env", [cc] + args, timeout: 120)
        guard result.status == .exited(0) else {
            throw HarnessError("cannot compile \(source) (\(cc) \(args.joined(separator: " "))): \(result.status)\n\(result.stderr)")
        }
        chmod(out, 0o755)
        built[key] = out
        return out
    }
}

// MARK: - Exit status

enum ExitStatus: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus s: Int32) {
        if s & 0x7f == 0 {
            self = .exited((s >> 8) & 0xff)
        } else {
            self = .signaled(s & 0x7f)
        }
    }

    var description: String {
        switch self {
        case .exited(let c): return "exit status \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        }
    }
}

// MARK: - A child process

/// pipe() with both ends close-on-exec (the spawn dup2s what the child needs).
/// Tests run one at a time, so no other thread spawns between the two calls.
private func cloexecPipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return true
}

/// The descriptors open in this process.
private func openDescriptors() -> [Int32] {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }.sorted()
}

/// glibc's posix_spawn_file_actions_addchdir_np (2.29+), which the Glibc
/// module does not import (it is a GNU extension).
private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
private let spawnAddChdir: AddChdir? = {
    guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "posix_spawn_file_actions_addchdir_np") else { return nil }
    return unsafeBitCast(sym, to: AddChdir.self)
}()

enum Stream: String { case stdout, stderr }

enum StdinSource {
    case pipe
    case null
}

/// One spawned process (ghost-run, ghost-resume, or a program run directly)
/// with its stdout and stderr collected by reader threads.
final class Child: @unchecked Sendable {
    let pid: pid_t
    let name: String
    private let cond = NSCondition()
    private var out = Data()
    private var err = Data()
    private var outClosed = false
    private var errClosed = false
    private var status: ExitStatus?
    private var stdinFD: Int32 = -1

    /// Starts executable with stdin (a pipe or /dev/null), stdout and stderr
    /// pipes, and no other descriptors than those named in `inherit`
    /// (descriptor in the child: descriptor here), whatever the test runner
    /// itself leaks.
    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
         cwd: String? = nil, stdin: StdinSource = .pipe, inherit: [Int32: Int32] = [:]) throws {
        name = (executable as NSString).lastPathComponent
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0], inPipe: [Int32] = [-1, -1]
        guard cloexecPipe(&outPipe), cloexecPipe(&errPipe) else {
            throw HarnessError("pipe: \(String(cString: strerror(errno)))")
        }
        if case .pipe = stdin {
            guard cloexecPipe(&inPipe) else { throw HarnessError("pipe stdin") }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if case .pipe = stdin {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var temporaries: [Int32] = []
        defer { temporaries.forEach { close($0) } }
        for (target, source) in inherit.sorted(by: { $0.key < $1.key }) {
            if target == source {
                // dup2 onto itself keeps FD_CLOEXEC: go through a free descriptor.
                let tmp = fcntl(source, F_DUPFD_CLOEXEC, 300)
                guard tmp >= 0 else { throw HarnessError("F_DUPFD: \(String(cString: strerror(errno)))") }
                temporaries.append(tmp)
                posix_spawn_file_actions_adddup2(&actions, tmp, target)
                posix_spawn_file_actions_addclose(&actions, tmp)
            } else {
                posix_spawn_file_actions_adddup2(&actions, source, target)
            }
        }
        // Close what the test runner leaks (descriptors without FD_CLOEXEC).
        for fd in openDescriptors() where fd > 2 && inherit[fd] == nil {
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 {
                posix_spawn_file_actions_addclose(&actions, fd)
            }
        }
        if let cwd {
            guard let addchdir = spawnAddChdir else {
                throw HarnessError("this libc has no posix_spawn_file_actions_addchdir_np")
            }
            let rc = addchdir(&actions, cwd)
            guard rc == 0 else { throw HarnessError("addchdir \(cwd): \(String(cString: strerror(rc)))") }
        }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        // Own process group, so tearDown can kill whatever is left of it.
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let env = environment ?? ProcessInfo.processInfo.environment
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var childPid: pid_t = 0
        let rc = posix_spawn(&childPid, executable, &actions, &attr, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        if inPipe[0] >= 0 { close(inPipe[0]) }
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            if inPipe[1] >= 0 { close(inPipe[1]) }
            throw HarnessError("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        pid = childPid
        stdinFD = inPipe[1]

        let outFD = outPipe[0], errFD = errPipe[0]
        Thread.detachNewThread { [self] in self.readLoop(fd: outFD, stream: .stdout) }
        Thread.detachNewThread { [self] in self.readLoop(fd: errFD, stream: .stderr) }
        Thread.detachNewThread { [self] in self.waitLoop() }
    }

    deinit {
        if stdinFD >= 0 { close(stdinFD) }
    }

    private func readLoop(fd: Int32, stream: Stream) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            cond.lock()
            if n <= 0 {
                if stream == .stdout { outClosed = true } else { errClosed = true }
                cond.broadcast()
                cond.unlock()
                close(fd)
                return
            }
            if stream == .stdout { out.append(contentsOf: buffer[0..<n]) } else { err.append(contentsOf: buffer[0..<n]) }
            cond.broadcast()
            cond.unlock()
        }
    }

    private func waitLoop() {
        var s: Int32 = 0
        while true {
            let r = waitpid(pid, &s, 0)
            if r == pid { break }
            if r < 0 && errno == EINTR { continue }
            s = 0x7f  // cannot happen: report as "signal 127"
            break
        }
        cond.lock()
        status = ExitStatus(waitStatus: s)
        cond.broadcast()
        cond.unlock()
    }

    // MARK: Output

    var stdoutText: String { cond.lock(); defer { cond.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderrText: String { cond.lock(); defer { cond.unlock() }; return String(decoding: err, as: UTF8.self) }

    func text(_ stream: Stream) -> String { stream == .stdout ? stdoutText : stderrText }

    var exitStatus: ExitStatus? { cond.lock(); defer { cond.unlock() }; return status }

    var isRunning: Bool { exitStatus == nil }

    /// Both streams and the status, for failure messages.
    var transcript: String {
        let o = stdoutText, e = stderrText
        func tail(_ s: String) -> String { s.count > 6000 ? "…" + String(s.suffix(6000)) : s }
        return "[\(name) pid \(pid), \(exitStatus.map { $0.description } ?? "still running")]\n"
            + "--- stdout ---\n\(tail(o))\n--- stderr ---\n\(tail(e))\n--------------"
    }

    /// Waits until one of the substrings appears in the stream; returns the
    /// index of the first one found and the whole line that holds it. Fails
    /// on timeout, or when the stream is closed without it.
    @discardableResult
    func waitFor(anyOf needles: [String], in stream: Stream, timeout: TimeInterval,
                 file: StaticString = #filePath, line: UInt = #line) throws -> (index: Int, line: String) {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while true {
            let data = stream == .stdout ? out : err
            let text = String(decoding: data, as: UTF8.self)
            for (i, needle) in needles.enumerated() {
                if let r = text.range(of: needle) {
                    let lineStart = text[..<r.lowerBound].lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
                    let lineEnd = text[r.upperBound...].firstIndex(of: "\n") ?? text.endIndex
                    return (i, String(text[lineStart..<lineEnd]))
                }
            }
            let closed = stream == .stdout ? outClosed : errClosed
            if closed {
                cond.unlock()
                let msg = "\(name): \(stream.rawValue) ended without \(needles.map { "'\($0)'" }.joined(separator: " or "))\n\(transcript)"
                cond.lock()
                throw HarnessError(msg)
            }
            if !cond.wait(until: deadline) {
                cond.unlock()
                let msg = "\(name): timed out after \(Int(timeout)) s waiting for \(needles.map { "'\($0)'" }.joined(separator: " or ")) on \(stream.rawValue)\n\(transcript)"
                cond.lock()
                throw HarnessError(msg)
            }
        }
    }

    @discardableResult
    func waitFor(_ needle: String, in stream: Stream = .stdout, timeout: TimeInterval = 60) throws -> String {
        try waitFor(anyOf: [needle], in: stream, timeout: timeout).line
    }

    /// Waits for the process to end (and its output to be read to the end).
    @discardableResult
    func waitExit(timeout: TimeInterval) throws -> ExitStatus {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while status == nil || !outClosed || !errClosed {
            if !cond.wait(until: deadline) {
                if let status {
                    // The process ended, but something it started still holds its
                    // stdout/stderr open: report the status anyway.
                    return status
                }
                cond.unlock()
                let msg = "\(name): still running after \(Int(timeout)) s\n\(transcript)"
                cond.lock()
                throw HarnessError(msg)
            }
        }
        return status!
    }

    // MARK: Input and signals

    func write(_ s: String) throws {
        guard stdinFD >= 0 else { throw HarnessError("\(name): stdin is not a pipe or is closed") }
        let bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw HarnessError("\(name): write to stdin: \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    func closeStdin() {
        if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
    }

    func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }
}

// MARK: - Running something to completion

struct RunResult {
    let status: ExitStatus
    let stdout: String
    let stderr: String
}

func runToCompletion(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                     cwd: String? = nil, input: String? = nil, timeout: TimeInterval) throws -> RunResult {
    let child = try Child(executable, arguments, environment: environment, cwd: cwd, stdin: input == nil ? .null : .pipe)
    if let input {
        try child.write(input)
        child.closeStdin()
    }
    do {
        let status = try child.waitExit(timeout: timeout)
        return RunResult(status: status, stdout: child.stdoutText, stderr: child.stderrText)
    } catch {
        kill(child.pid, SIGKILL)
        throw error
    }
}

// MARK: - /proc helpers

enum ProcInfo {
    /// The state letter of a process (R, S, Z, ...), nil if it does not exist.
    static func state(_ pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces)
        return rest.first
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        guard let s = state(pid) else { return false }
        return s != "Z" && s != "X"
    }

    static func exe(_ pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
    }

    static func ppid(_ pid: pid_t) -> pid_t? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2 else { return nil }
        return pid_t(fields[1])
    }

    static func uid(_ pid: pid_t) -> uid_t? {
        statusFields(pid, "Uid:")?.first.flatMap { uid_t($0) }
    }

    /// The values after `key` (e.g. "VmPTE:") in /proc/PID/status, nil if it has no such line.
    static func statusFields(_ pid: pid_t, _ key: String) -> [Substring]? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(key) {
            return Array(line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst())
        }
        return nil
    }

    /// Live descendants of pid.
    static func descendants(of root: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var parents: [pid_t: pid_t] = [:]
        for e in entries {
            guard let p = pid_t(e), let pp = ppid(p) else { continue }
            parents[p] = pp
        }
        return parents.keys.filter { p in
            var cur = p
            for _ in 0..<64 {
                guard let pp = parents[cur] else { return false }
                if pp == root { return true }
                cur = pp
            }
            return false
        }.sorted()
    }
}

/// Size in bytes of all regular files under dir (0 if it does not exist).
func directorySize(_ dir: String) -> UInt64 {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return 0 }
    var total: UInt64 = 0
    while let rel = e.nextObject() as? String {
        var st = stat()
        if lstat(dir + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG {
            total += UInt64(st.st_size)
        }
    }
    return total
}

func fileSize(_ path: String) -> Int64? {
    var st = stat()
    return stat(path, &st) == 0 ? Int64(st.st_size) : nil
}

/// The checkpoint files of an image directory, by number.
func checkpointFiles(_ imageDir: String) -> [(number: Int, path: String)] {
    let dir = imageDir + "/checkpoints"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    return names.compactMap { name -> (Int, String)? in
        guard name.hasSuffix(".ckpt"), !name.hasPrefix("."), let n = Int(name.dropLast(5)) else { return nil }
        return (n, dir + "/" + name)
    }.sorted { $0.0 < $1.0 }
}

/// Flips bytes in the middle and near the end of a file (keeps its size).
func damageFile(_ path: String) throws {
    let fd = open(path, O_RDWR)
    guard fd >= 0 else { throw HarnessError("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    fstat(fd, &st)
    let size = Int(st.st_size)
    guard size > 0 else { throw HarnessError("\(path) is empty") }
    for off in Set([size / 2, size / 3, max(0, size - 9)]) {
        var b: UInt8 = 0
        guard pread(fd, &b, 1, off_t(off)) == 1 else { throw HarnessError("pread \(path)") }
        b ^= 0xFF
        guard pwrite(fd, &b, 1, off_t(off)) == 1 else { throw HarnessError("pwrite \(path)") }
    }
    fsync(fd)
}

func sleepSeconds(_ s: Double) {
    usleep(useconds_t(s * 1_000_000))
}

// MARK: - Base class for the end-to-end tests

/// How a test program is released after the restart.
enum Release {
    case line(String)            // written to the job's stdin (ghost-resume's stdin)
    case signal(Int32)           // sent to the resumed job's pid
    case nothing                 // the program finishes on its own
}

class GhostTestCase: XCTestCase {
    private var children: [Child] = []
    private var extraPids: [(pid: pid_t, exe: String)] = []
    private var tempDirs: [String] = []
    var cleanups: [() -> Void] = []

    static let isRoot = geteuid() == 0

    override func setUpWithError() throws {
        try super.setUpWithError()
        for tool in [Paths.ghostRun, Paths.ghostResume] where access(tool, X_OK) != 0 {
            XCTFail("\(tool) is not built: run `swift build` first (or set GHOST_BIN_DIR)")
            throw HarnessError("missing \(tool)")
        }
    }

    override func tearDownWithError() throws {
        for child in children where child.isRunning {
            kill(-child.pid, SIGKILL)
            kill(child.pid, SIGKILL)
        }
        for child in children {
            for p in ProcInfo.descendants(of: child.pid) { kill(p, SIGKILL) }
        }
        for p in extraPids where ProcInfo.isAlive(p.pid) && ProcInfo.exe(p.pid) == p.exe { kill(p.pid, SIGKILL) }
        for child in children { _ = try? child.waitExit(timeout: 10) }
        for c in cleanups.reversed() { c() }
        cleanups = []
        let failed = (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0
        for dir in tempDirs {
            if failed && ProcessInfo.processInfo.environment["GHOST_KEEP_FAILED"] != nil {
                print("keeping \(dir) of failed test \(name)")
            } else {
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        children = []
        extraPids = []
        tempDirs = []
        try super.tearDownWithError()
    }

    // MARK: Files

    /// A fresh private directory, removed at tearDown.
    func makeTempDir(_ label: String = "t") throws -> String {
        var template = Array((NSTemporaryDirectory() + "ghost-\(label)-XXXXXX").utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { buf -> String? in
            guard let p = mkdtemp(buf.baseAddress!) else { return nil }
            return String(cString: p)
        }
        guard let dir else { throw HarnessError("mkdtemp: \(String(cString: strerror(errno)))") }
        tempDirs.append(dir)
        return dir
    }

    func program(_ name: String) throws -> String { try ProgramBuilder.shared.program(name) }

    // MARK: Processes

    func track(_ child: Child) -> Child {
        children.append(child)
        return child
    }

    /// Remembers a job's pid (and what it runs) so tearDown can kill it if it is left over.
    func trackPid(_ pid: pid_t) {
        if let exe = ProcInfo.exe(pid) { extraPids.append((pid, exe)) }
    }

    func environment(_ overrides: [String: String] = [:], removing: [String] = ["SLURM_JOB_ID"]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for k in removing { env.removeValue(forKey: k) }
        for (k, v) in overrides { env[k] = v }
        return env
    }

    /// Starts `ghost-run [ghostArgs] -- program args` (through `wrapper`, e.g. setpriv, if given).
    func startGhostRun(_ programPath: String, _ args: [String] = [], imageDir: String?, ghostArgs: [String] = [],
                       cwd: String? = nil, env: [String: String]? = nil, wrapper: [String] = [],
                       ghostRunPath: String = Paths.ghostRun, inherit: [Int32: Int32] = [:]) throws -> Child {
        var argv: [String] = []
        if let imageDir { argv += ["--image-dir", imageDir] }
        argv += ghostArgs + ["--", programPath] + args
        let child: Child
        if wrapper.isEmpty {
            child = try Child(ghostRunPath, argv, environment: env ?? environment(), cwd: cwd, inherit: inherit)
        } else {
            child = try Child(wrapper[0], Array(wrapper.dropFirst()) + [ghostRunPath] + argv,
                              environment: env ?? environment(), cwd: cwd, inherit: inherit)
        }
        return track(child)
    }

    /// Starts `ghost-resume [args] DIR`.
    func startGhostResume(_ imageDir: String, _ args: [String] = [], cwd: String? = nil,
                          env: [String: String]? = nil, wrapper: [String] = [],
                          ghostResumePath: String = Paths.ghostResume, inherit: [Int32: Int32] = [:]) throws -> Child {
        let argv = args + [imageDir]
        let child: Child
        if wrapper.isEmpty {
            child = try Child(ghostResumePath, argv, environment: env ?? environment(), cwd: cwd, inherit: inherit)
        } else {
            child = try Child(wrapper[0], Array(wrapper.dropFirst()) + [ghostResumePath] + argv,
                              environment: env ?? environment(), cwd: cwd, inherit: inherit)
        }
        return track(child)
    }

    /// The job's pid from "ghost: started pid P" / "ghost: resumed checkpoint N as pid P",
    /// checked against /proc (it must be a live descendant running `exe` if given).
    func jobPid(of ghost: Child, exe: String? = nil, timeout: TimeInterval = 60) throws -> pid_t {
        let (_, line) = try ghost.waitFor(anyOf: ["ghost: started pid ", "ghost: resumed checkpoint "],
                                          in: .stderr, timeout: timeout)
        guard let r = line.range(of: "pid "),
              let pid = pid_t(line[r.upperBound...].prefix(while: { $0.isNumber })) else {
            throw HarnessError("cannot read the job's pid from '\(line)'\n\(ghost.transcript)")
        }
        if let exe {
            // The line may come out just before the exec: give it a moment.
            let resolved = (exe as NSString).resolvingSymlinksInPath
            let deadline = Date(timeIntervalSinceNow: 5)
            while let actual = ProcInfo.exe(pid), actual != resolved {
                if Date() > deadline {
                    throw HarnessError("pid \(pid) from '\(line)' runs \(actual), not \(resolved)\n\(ghost.transcript)")
                }
                usleep(10_000)
            }
        }
        trackPid(pid)
        return pid
    }

    /// SIGUSR1 to ghost, then waits for "ghost: checkpoint N done"; throws on "checkpoint N failed".
    @discardableResult
    func checkpoint(_ ghost: Child, number: Int, timeout: TimeInterval = 120) throws -> String {
        ghost.signal(SIGUSR1)
        return try waitCheckpoint(ghost, number: number, timeout: timeout)
    }

    @discardableResult
    func waitCheckpoint(_ ghost: Child, number: Int, timeout: TimeInterval = 120) throws -> String {
        let (i, line) = try ghost.waitFor(anyOf: ["ghost: checkpoint \(number) done", "ghost: checkpoint \(number) failed"],
                                          in: .stderr, timeout: timeout)
        if i == 1 { throw HarnessError("checkpoint \(number) failed: \(line)\n\(ghost.transcript)") }
        return line
    }

    /// Simulates a node failure: SIGKILL to ghost-run/ghost-resume; the job
    /// must die with it (PR_SET_PDEATHSIG) within a few seconds.
    func killNode(_ ghost: Child, jobPid: pid_t?, file: StaticString = #filePath, line: UInt = #line) throws {
        kill(ghost.pid, SIGKILL)
        let status = try ghost.waitExit(timeout: 30)
        XCTAssertEqual(status, .signaled(SIGKILL), "ghost process did not die of SIGKILL", file: file, line: line)
        if let jobPid {
            try waitGone(jobPid, what: "job of the killed \(ghost.name)")
        }
    }

    func waitGone(_ pid: pid_t, what: String, timeout: TimeInterval = 15) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while ProcInfo.isAlive(pid) {
            if Date() > deadline {
                throw HarnessError("\(what) (pid \(pid)) is still alive \(Int(timeout)) s later")
            }
            usleep(20_000)
        }
    }

    /// Waits for ghost-resume's "ghost: resumed checkpoint N as pid P" and returns (N, P).
    func waitResumed(_ ghost: Child, exe: String? = nil, timeout: TimeInterval = 120) throws -> (checkpoint: Int, pid: pid_t) {
        let line = try ghost.waitFor("ghost: resumed checkpoint ", in: .stderr, timeout: timeout)
        guard let r = line.range(of: "resumed checkpoint "),
              let n = Int(line[r.upperBound...].prefix(while: { $0.isNumber })) else {
            throw HarnessError("cannot parse '\(line)'\n\(ghost.transcript)")
        }
        let pid = try jobPid(of: ghost, exe: exe, timeout: 5)
        return (n, pid)
    }

    /// Expects the ghost process to exit with `expected`; the failure message carries the transcript.
    func expectExit(_ ghost: Child, _ expected: ExitStatus, timeout: TimeInterval = 120,
                    file: StaticString = #filePath, line: UInt = #line) throws {
        let status = try ghost.waitExit(timeout: timeout)
        XCTAssertEqual(status, expected, "\(ghost.name) ended with \(status), expected \(expected)\n\(ghost.transcript)",
                       file: file, line: line)
    }

    /// ghost-run PROGRAM ARGS → "ready" → checkpoint 1 → kill -9 of ghost-run
    /// and the job (a node failure), leaving the image in `imageDir`.
    func runCheckpointKill(_ exe: String, _ args: [String] = [], imageDir: String, ghostArgs: [String] = [],
                           cwd: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try startGhostRun(exe, args, imageDir: imageDir, ghostArgs: ghostArgs, cwd: cwd)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid, file: file, line: line)
    }

    /// Releases a resumed job (`release` line on its stdin) and expects it
    /// to report "ok ..." and exit 0; returns the "ok" line.
    @discardableResult
    func finishResumed(_ ghost: Child, release: String = "go", timeout: TimeInterval = 120,
                       file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ghost.write(release + "\n")
        let ok = try ghost.waitFor(anyOf: ["ok ", "FAIL"], in: .stdout, timeout: timeout)
        XCTAssertEqual(ok.index, 0, "the resumed job reported: \(ok.line)\n\(ghost.transcript)", file: file, line: line)
        try expectExit(ghost, .exited(0), file: file, line: line)
        return ok.line
    }

    /// The whole scenario of one feature test:
    /// ghost-run → "ready" → (settle) → SIGUSR1 → "checkpoint 1 done" → SIGKILL ghost-run
    /// (job gone too) → ghost-resume → release → "ok", exit 0.
    /// Returns the "ok ..." line of the resumed job.
    @discardableResult
    func checkpointKillResume(_ name: String, _ args: [String] = [], release: Release = .line("go"),
                              readyText: String = "ready", settle: Double = 0, cwd: String? = nil,
                              runTimeout: TimeInterval = 120, inherit: [Int32: Int32] = [:],
                              resumeEnv: [String: String] = [:],
                              file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let exe = try program(name)
        let dir = try makeTempDir(name)
        let images = dir + "/images"
        let run = try startGhostRun(exe, args, imageDir: images, cwd: cwd ?? dir, inherit: inherit)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor(readyText, in: .stdout, timeout: 60)
        XCTAssertFalse(run.stdoutText.contains("FAIL"), "\(run.transcript)", file: file, line: line)
        if settle > 0 { sleepSeconds(settle) }
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(images, cwd: cwd ?? dir, env: environment(resumeEnv), inherit: inherit)
        let (n, newPid) = try waitResumed(resumed, exe: exe)
        XCTAssertEqual(n, 1, "resumed the wrong checkpoint\n\(resumed.transcript)", file: file, line: line)
        switch release {
        case .line(let text): try resumed.write(text + "\n")
        case .signal(let sig): kill(newPid, sig)
        case .nothing: break
        }
        let okLine = try resumed.waitFor(anyOf: ["ok ", "FAIL"], in: .stdout, timeout: runTimeout)
        XCTAssertEqual(okLine.index, 0, "the resumed job reported: \(okLine.line)\n\(resumed.transcript)", file: file, line: line)
        try expectExit(resumed, .exited(0), file: file, line: line)
        return okLine.line
    }
}
