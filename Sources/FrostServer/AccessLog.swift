import FrostPython
import FrostRuntime
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// One line per finished request, in Combined Log Format or W3C extended format, to
/// stdout or a file opened for appending.
///
/// Lines are formatted by whoever finishes the request (an event loop, a filter's thread)
/// into a shared buffer, with the timestamp formatted once a second; a writer thread of
/// its own writes the buffer out, at most `delay` after a line arrived or as soon as it
/// holds `flushBytes`, so the event loops never block on the log's file. Lines never
/// interleave (whole lines are written, with O_APPEND). `close` writes what is left; a
/// process killed outright loses at most the last `delay` of lines, as nginx's
/// `access_log ... buffer= flush=` does.
public final class AccessLog: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `monitor`; fd and format never change.
    public enum Format: String, Sendable { case combined, w3c }

    let format: Format
    let fd: Int32
    static let delay = 0.05
    static let flushBytes = 64 * 1024
    private let monitor = Monitor()
    private var buffer: [UInt8] = []
    private var writerWaitsForLines = false
    private var closed = false
    private var writer: pthread_t?
    /// The last second formatted, and its text (combined, W3C).
    private var clock: (second: time_t, combined: String, w3c: String) = (-1, "", "")

    /// `path` nil or "-" is stdout.
    public init(path: String?, format: Format) throws {
        self.format = format
        if let path, path != "-" {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw HostError(.accessLog, subject: path, "cannot open the access log \(path): \(errnoDescription())")
            }
            self.fd = fd
        } else {
            self.fd = 1
        }
        if format == .w3c {
            writeOut("#Software: frost/0.1\n#Version: 1.0\n#Date: \(AccessLog.timestamp(time(nil), w3c: true))\n"
                     + "#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status sc-bytes time-taken "
                     + "cs(User-Agent) cs(Referer)\n", to: fd)
        }
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            let log = Unmanaged<AccessLog>.fromOpaque(raw!).takeRetainedValue()
            log.runWriter()
            return nil
        }, context)
        if status == 0 {
            writer = thread
        } else {
            Unmanaged<AccessLog>.fromOpaque(context).release()  // lines are then written at once
        }
    }

    deinit { if fd != 1 { Glibc.close(fd) } }

    func write(_ record: AccessRecord) {
        let now = time(nil)
        monitor.locked {
            let line = format(record, stamp: stamp(now))
            if writer == nil || closed {
                writeOut(line, to: fd)
                return
            }
            let wasEmpty = buffer.isEmpty
            buffer.append(contentsOf: line.utf8)
            if (wasEmpty && writerWaitsForLines) || buffer.count >= AccessLog.flushBytes { monitor.broadcast() }
        }
    }

    /// Writes what is buffered and stops the writer; later lines are written at once.
    public func close() {
        let thread: pthread_t? = monitor.locked {
            guard !closed else { return nil }
            closed = true
            monitor.broadcast()
            return writer
        }
        if let thread { pthread_join(thread, nil) }
    }

    private func runWriter() {
        monitor.locked {
            while true {
                while buffer.isEmpty && !closed {
                    writerWaitsForLines = true
                    monitor.wait()
                    writerWaitsForLines = false
                }
                // Let more lines gather, unless the buffer fills or the log closes.
                if !closed && buffer.count < AccessLog.flushBytes {
                    _ = monitor.wait(until: deadline(afterSeconds: AccessLog.delay))
                }
                let lines = buffer
                buffer.removeAll(keepingCapacity: true)
                if !lines.isEmpty { monitor.unlocked { writeOut(lines, to: fd) } }
                if closed && buffer.isEmpty { return }
            }
        }
    }

    /// The timestamp of `now` in this log's format, formatted once per second.
    private func stamp(_ now: time_t) -> String {
        if clock.second != now {
            clock = (now, AccessLog.timestamp(now, w3c: false), AccessLog.timestamp(now, w3c: true))
        }
        return format == .w3c ? clock.w3c : clock.combined
    }

    private func format(_ record: AccessRecord, stamp: String) -> String {
        switch format {
        case .combined:
            let target = record.parameters.isEmpty ? record.target : record.target + "?" + record.parameters
            return "\(record.clientHost) - \(record.user.isEmpty ? "-" : record.user) [\(stamp)] "
                + "\"\(record.method) \(target) \(record.version)\" \(record.status) \(record.bytesSent) "
                + "\"\(record.referer ?? "-")\" \"\(record.agent ?? "-")\"\n"
        case .w3c:
            func field(_ value: String?) -> String {
                guard let value, !value.isEmpty else { return "-" }
                return String(value.map { $0 == " " ? "+" : $0 })
            }
            return [stamp, record.clientHost, record.method, field(record.target),
                    field(record.parameters), String(record.status), String(record.bytesSent),
                    String(record.milliseconds), field(record.agent), field(record.referer)].joined(separator: " ") + "\n"
        }
    }

    /// "21/Nov/2026:06:18:03 +0000" (combined) or "2026-11-21 06:18:03" (W3C, UTC).
    static func timestamp(_ now: time_t, w3c: Bool) -> String {
        var now = now
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, w3c ? "%Y-%m-%d %H:%M:%S" : "%d/%b/%Y:%H:%M:%S +0000", &parts)
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
