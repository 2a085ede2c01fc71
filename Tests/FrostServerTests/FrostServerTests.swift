import Foundation
import Testing
@testable import FrostServer

@Suite struct ServerHelperTests {
    @Test func htmlEscaping() {
        #expect(htmlEscaped("<a href=\"x\">&</a>") == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;")
    }

    @Test func reasonPhrases() {
        #expect(HTTPReason.phrase(404) == "Not Found")
        #expect(HTTPReason.phrase(599) == "Status 599")
    }
}

@Suite struct SiteTests {
    let site = Site(virtualDirectories: [
        .init(name: "/", path: "/srv/www", scriptMaps: []),
        .init(name: "/app", path: "/srv/app", scriptMaps: ["*"]),
        .init(name: "/py", path: "/srv/py", scriptMaps: [".py"]),
    ])

    @Test func longestVirtualDirectoryWinsAndScriptMapsDecide() {
        #expect(site.route("/index.html") == .file(directory: site.virtualDirectories[0], relative: "/index.html"))
        #expect(site.route("/app/x/y") == .extensionCall(directory: site.virtualDirectories[1], scriptName: "/app", pathInfo: "/x/y"))
        #expect(site.route("/app") == .extensionCall(directory: site.virtualDirectories[1], scriptName: "/app", pathInfo: ""))
        #expect(site.route("/application") == .file(directory: site.virtualDirectories[0], relative: "/application"))
        #expect(site.route("/py/run.PY") == .extensionCall(directory: site.virtualDirectories[2], scriptName: "/py", pathInfo: "/run.PY"))
        #expect(site.route("/py/readme.txt") == .file(directory: site.virtualDirectories[2], relative: "/readme.txt"))
        #expect(Site(virtualDirectories: [.init(name: "/only", path: "/x", scriptMaps: [])]).route("/other") == .notFound)
    }

    @Test func siteFilesAreChecked() throws {
        let directory = NSTemporaryDirectory() + "frost-site-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = directory + "/site.json"
        try "{\"virtual_directories\": [{\"name\": \"static/\", \"path\": \"\(directory)\", \"script_maps\": []}]}"
            .write(toFile: good, atomically: true, encoding: .utf8)
        #expect(try Site.load(good).virtualDirectories == [.init(name: "/static", path: directory, scriptMaps: [])])
        for bad in ["{}", "{\"virtual_directories\": [{\"name\": \"/\"}]}",
                    "{\"virtual_directories\": [{\"name\": \"/\", \"path\": \"relative\"}]}",
                    "{\"virtual_directories\": [{\"name\": \"/\", \"path\": \"\(directory)\", \"script_maps\": [\"py\"]}]}",
                    "not json"] {
            try bad.write(toFile: good, atomically: true, encoding: .utf8)
            #expect(throws: Site.ConfigurationError.self, "\(bad)") { _ = try Site.load(good) }
        }
    }

    @Test func rangesFollowRFC7233() {
        #expect(StaticFiles.parseRange("bytes=0-9", size: 100) == .part(0, 9))
        #expect(StaticFiles.parseRange("bytes=90-", size: 100) == .part(90, 99))
        #expect(StaticFiles.parseRange("bytes=-10", size: 100) == .part(90, 99))
        #expect(StaticFiles.parseRange("bytes=50-500", size: 100) == .part(50, 99))
        #expect(StaticFiles.parseRange("bytes=100-", size: 100) == .unsatisfiable)
        #expect(StaticFiles.parseRange("bytes=0-1,5-6", size: 100) == .whole)
        #expect(StaticFiles.parseRange("items=0-1", size: 100) == .whole)
        #expect(StaticFiles.parseRange("bytes=9-3", size: 100) == .whole)
    }

    @Test func datesAndTypes() {
        #expect(httpDate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777)
        #expect(parseHTTPDate("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        // Numbers past Int32 from a client are refused, not a trap.
        #expect(parseHTTPDate("Sun, 06 Nov 99999999999 08:49:37 GMT") == nil)
        #expect(parseHTTPDate("Sun, 06 Nov 1994 99999999999:49:37 GMT") == nil)
        #expect(parseHTTPDate("Sun, 9999999999 Nov 1994 08:49:37 GMT") == nil)
        #expect(StaticFiles.contentType(for: "/a/b/style.CSS") == "text/css; charset=utf-8")
        #expect(StaticFiles.contentType(for: "/a/noext") == "application/octet-stream")
    }
}

@Suite struct InlineScheduleTests {
    let slot = InlineSchedule.slot(of: "/fast?page=1")

    /// A schedule where `slot` has been measured fast on the Python threads: it runs inline.
    func inlineSchedule() -> InlineSchedule {
        let schedule = InlineSchedule(budget: 0.002)
        #expect(!schedule.runsInline(slot), "a path's first requests are measured on the Python threads")
        #expect(schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 100) == nil)
        #expect(schedule.runsInline(slot))
        return schedule
    }

    @Test func slotsAreThePathWithoutTheQuery() {
        #expect(InlineSchedule.slot(of: "/fast?page=2") == slot)
        #expect(InlineSchedule.slot(of: "/fast") == slot)
    }

    /// Wall time on a shared machine: a call can be preempted for milliseconds. One call
    /// over the budget keeps the path inline; two in a row send it to be measured again.
    @Test func oneCallOverTheBudgetIsForgivenTwoInARowAreNot() {
        let schedule = inlineSchedule()
        #expect(schedule.learn(slot, seconds: 0.005, waited: false, onEventLoop: true, now: 101) == nil)
        #expect(schedule.runsInline(slot))
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: true, now: 101)
        _ = schedule.learn(slot, seconds: 0.005, waited: false, onEventLoop: true, now: 102)
        #expect(schedule.runsInline(slot), "a fast call in between: the count starts again")
        #expect(schedule.learn(slot, seconds: 0.003, waited: false, onEventLoop: true, now: 102) == nil)
        #expect(!schedule.runsInline(slot), "two calls over the budget in a row")
        // Measured fast on the Python threads: inline again, with no hold.
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 103)
        #expect(schedule.runsInline(slot))
        // The other paths were never touched.
        #expect(!schedule.runsInline(InlineSchedule.slot(of: "/other")))
    }

    /// A call that stalled the loop, or waited for its client there, holds the path on the
    /// Python threads at once, for a hold that doubles with each strike.
    @Test func aStallOrAWaitHoldsThePathAtOnce() {
        let schedule = inlineSchedule()
        #expect(schedule.learn(slot, seconds: 0.2, waited: false, onEventLoop: true, now: 200) == 20)
        #expect(!schedule.runsInline(slot))
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 210)
        #expect(!schedule.runsInline(slot), "still held: measured fast, but the hold runs until 220")
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 221)
        #expect(schedule.runsInline(slot))
        #expect(schedule.learn(slot, seconds: 0.0001, waited: true, onEventLoop: true, now: 230) == 40)
        #expect(!schedule.runsInline(slot))
        // Measured again on the Python threads, fast: inline. Such a call that was slow,
        // once the path is inline, waited for the GIL behind the loop's handlers: no hold.
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 271)
        #expect(schedule.runsInline(slot))
        _ = schedule.learn(slot, seconds: 0.004, waited: false, onEventLoop: false, now: 272)
        #expect(schedule.runsInline(slot), "a call on a Python thread of an inline path, behind the loop's handlers")
        _ = schedule.learn(slot, seconds: 0.5, waited: false, onEventLoop: false, now: 273)
        #expect(!schedule.runsInline(slot), "but one that took a stall's time holds it")
        // Slow on the Python threads while held: held again, as long (two strikes: 40 s),
        // without another strike.
        _ = schedule.learn(slot, seconds: 0.01, waited: false, onEventLoop: false, now: 300)
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 339)
        #expect(!schedule.runsInline(slot), "held until 340")
        _ = schedule.learn(slot, seconds: 0.0001, waited: false, onEventLoop: false, now: 341)
        #expect(schedule.runsInline(slot))
        #expect(schedule.learn(slot, seconds: 0.2, waited: false, onEventLoop: true, now: 400) == 80, "the third strike")
    }
}

@Suite struct PythonOutputTests {
    /// print() writes its pieces one by one: two threads printing at once must still give
    /// whole lines, each with its tag (the filter tests read such lines from the log).
    @Test func concurrentPrintsStayWholeLines() throws {
        let script = PythonOutput.source + """

            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            sys.setswitchinterval(1e-6)  # switch threads as often as CPython can
            out = TaggedLog("t", 1)
            barrier = threading.Barrier(2)
            def run(word):
                barrier.wait()
                for _ in range(3000):
                    print(word, word, word, file=out)
            threads = [threading.Thread(target=run, args=(word,)) for word in ("aaaa", "bbbb")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            out.flush()
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-I", "-c", script]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 6000)
        let mixed = lines.filter { $0 != "t: aaaa aaaa aaaa" && $0 != "t: bbbb bbbb bbbb" }
        #expect(mixed.isEmpty, "\(mixed.count) lines mixed, e.g. \(mixed.prefix(3))")
    }
}
