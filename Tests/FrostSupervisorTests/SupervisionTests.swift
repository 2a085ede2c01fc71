import Testing
@testable import FrostSupervisor

/// The master's policy driven without processes: pids are made up, time is a number.
@Suite struct SupervisionTests {
    /// A master that starts every spawned worker with the next pid, as `Master` does.
    struct Harness {
        var policy: Supervision
        var now = 0.0
        var nextPID: Int32 = 100
        var log: [String] = []
        var notified: [[String]] = []
        var terminated: [Int32] = []
        var killed: [Int32] = []
        var announced = 0
        var spawnFails = false

        init(workers: Int = 2, configure: (inout Supervision.Settings) -> Void = { _ in }) {
            var settings = Supervision.Settings(workers: workers, heartbeatTimeout: 30, gracefulTimeout: 30, startTimeout: 120)
            configure(&settings)
            policy = Supervision(settings: settings)
        }

        mutating func run(_ commands: [Supervision.Command]) {
            for command in commands {
                switch command {
                case .spawn(let number):
                    if spawnFails {
                        run(policy.spawnFailed(number: number, reason: "cannot start a worker: no", now: now))
                    } else {
                        nextPID += 1
                        run(policy.spawned(number: number, pid: nextPID, now: now))
                    }
                case .terminate(let pid): terminated.append(pid)
                case .kill(let pid): killed.append(pid)
                case .log(let line): log.append(line)
                case .notify(let fields): notified.append(fields)
                case .announce: announced += 1
                }
            }
        }

        mutating func tick(after seconds: Double = 0) { now += seconds; run(policy.tick(now: now)) }
        mutating func ready(_ pid: Int32) { run(policy.received(.ready, from: pid, now: now)) }
        mutating func heartbeat(_ pid: Int32) { run(policy.received(.heartbeat(served: 1, residentKiB: 1024), from: pid, now: now)) }
        mutating func exit(_ pid: Int32, _ how: String = "exited with status 1") { run(policy.exited(pid: pid, how: how, now: now)) }
        mutating func readyAll() { for pid in pids(.starting) { ready(pid) }; tick() }

        func pids(_ state: Supervision.State) -> [Int32] { policy.workers.filter { $0.state == state }.compactMap(\.pid) }
        var generations: [Int] { policy.workers.map(\.generation) }
    }

    @Test func startsTheWorkersAndAnnouncesOnceAllServe() {
        var master = Harness(workers: 2)
        master.tick()
        #expect(master.pids(.starting) == [101, 102])
        master.ready(101)
        master.tick()
        #expect(master.announced == 0, "one of two workers serving is not yet serving")
        master.ready(102)
        master.tick()
        master.tick(after: 1)
        #expect(master.announced == 1)
        #expect(master.policy.phase == .serving)
        #expect(master.policy.status == "STATUS=2 of 2 workers serving (generation 1)")
        #expect(master.policy.isHealthy(now: master.now))
    }

    @Test func aCrashedWorkerIsReplacedAtOnce() {
        var master = Harness(workers: 2)
        master.tick()
        master.readyAll()
        master.exit(101, "was killed by signal 9 (Killed)")
        #expect(master.log.last == "worker 1 (pid 101) was killed by signal 9 (Killed); replaced by worker 3 (pid 103)")
        #expect(master.policy.restarts == 1)
        #expect(master.pids(.starting) == [103])
        master.tick()
        #expect(master.policy.workers.count == 2, "the replacement is not spawned twice")
        master.ready(103)
        #expect(master.log.last == "worker 3 (pid 103) is serving")
    }

    @Test func failedStartsBackOffAndGiveUpWhenNoneEverServed() {
        var master = Harness(workers: 1)
        master.tick()
        master.exit(101)
        #expect(master.log.last == "worker 1 (pid 101) exited with status 1 before it was ready; retrying in 0.5 s")
        master.tick(after: 0.4)
        #expect(master.policy.workers.isEmpty, "no spawn inside the backoff")
        master.tick(after: 0.2)
        #expect(master.pids(.starting) == [102])
        master.exit(102)
        #expect(master.log.last?.hasSuffix("retrying in 1.0 s") == true)
        master.tick(after: 1.1)
        master.exit(103)
        #expect(master.log.last == "worker 3 (pid 103) exited with status 1 before it was ready; 3 starts failed and none succeeded: stopping")
        #expect(master.policy.phase == .stopping)
        #expect(master.policy.finished == 1)
    }

    @Test func theBackoffGrowsToTenSecondsOnceAWorkerHasServed() {
        var master = Harness(workers: 1)
        master.tick()
        master.readyAll()
        master.exit(101)  // crashed while serving: replaced at once, no backoff
        var delays: [String] = []
        for _ in 0..<7 {
            guard let pid = master.pids(.starting).first else { master.tick(after: 10); continue }
            master.exit(pid)
            delays.append(String(master.log.last!.split(separator: " ").suffix(2).first!))
            master.tick(after: 10.5)
        }
        #expect(delays == ["0.5", "1.0", "2.0", "4.0", "8.0", "10.0", "10.0"])
        #expect(master.policy.phase == .serving, "a master that once served keeps trying")
    }

    @Test func aSilentWorkerIsKilledOnceAndReplacedWhenReaped() {
        var master = Harness(workers: 1)
        master.tick()
        master.readyAll()
        master.tick(after: 20)
        #expect(master.killed.isEmpty)
        master.tick(after: 11)
        #expect(master.killed == [101])
        #expect(master.log.last == "worker 1 (pid 101) missed its heartbeat for 31.0 s: killing it")
        #expect(!master.policy.isHealthy(now: master.now))
        master.tick(after: 5)
        #expect(master.killed == [101], "killed once, not on every tick")
        #expect(master.policy.workers.count == 1, "no replacement before it is reaped")
        master.exit(101, "was killed by signal 9 (Killed)")
        #expect(master.pids(.starting) == [102])
        #expect(master.policy.restarts == 1)
    }

    @Test func heartbeatsKeepAWorkerAlive() {
        var master = Harness(workers: 1)
        master.tick()
        master.readyAll()
        for _ in 0..<10 {
            master.tick(after: 20)
            master.heartbeat(101)
        }
        #expect(master.killed.isEmpty)
        #expect(master.policy.workers.first?.served == 1)
    }

    @Test func aWorkerThatNeverGetsReadyIsKilledAndCountsAsAFailedStart() {
        var master = Harness(workers: 1) { $0.startTimeout = 5 }
        master.tick()
        master.tick(after: 6)
        #expect(master.killed == [101])
        master.exit(101, "was killed by signal 9 (Killed)")
        #expect(master.policy.startFailures == 1)
        #expect(master.log.last?.hasSuffix("before it was ready; retrying in 0.5 s") == true)
    }

    @Test func aRecyclingWorkerStopsOnlyAfterItsReplacementServes() {
        var master = Harness(workers: 1)
        master.tick()
        master.readyAll()
        master.run(master.policy.received(.recycle(reason: "served 1000 requests"), from: 101, now: master.now))
        #expect(master.log.last == "worker 1 (pid 101) asks to be recycled (served 1000 requests); starting its replacement")
        master.tick()
        #expect(master.pids(.starting) == [102])
        #expect(master.terminated.isEmpty, "the old worker serves until the new one does")
        master.ready(102)
        master.tick()
        #expect(master.terminated == [101])
        master.exit(101, "exited with status 0")
        #expect(master.log.last == "worker 1 (pid 101) stopped (exited with status 0)")
        #expect(master.policy.restarts == 0)
    }

    @Test func aReloadSwapsGenerationsWhenTheNewOneServes() {
        var master = Harness(workers: 2)
        master.tick()
        master.readyAll()
        master.run(master.policy.reload(cause: "SIGHUP", now: master.now))
        #expect(master.policy.phase == .reloading)
        #expect(master.notified.last?.first == "RELOADING=1")
        master.tick()
        #expect(master.generations == [1, 1, 2, 2])
        master.ready(103)
        master.tick()
        #expect(master.terminated.isEmpty, "half the new generation is not enough")
        master.ready(104)
        master.tick()
        #expect(master.terminated == [101, 102])
        #expect(master.log.last == "reload done: generation 2 serves with 2 worker(s)")
        #expect(master.notified.last == ["READY=1", "STATUS=2 of 2 workers serving (generation 2)"])
        #expect(master.announced == 1, "announced once, at the first start")
    }

    @Test func aReloadWhoseWorkersNeverStartIsAbandoned() {
        var master = Harness(workers: 1)
        master.tick()
        master.readyAll()
        master.run(master.policy.reload(cause: "SIGHUP", now: master.now))
        for _ in 0..<5 {
            master.tick(after: 11)
            guard let pid = master.policy.workers.first(where: { $0.generation == 2 })?.pid else { break }
            master.exit(pid)
        }
        #expect(master.log.contains("reload abandoned: the new generation does not start; the previous one keeps serving"))
        #expect(master.policy.generation == 1)
        #expect(master.policy.phase == .serving)
        #expect(master.terminated.isEmpty, "the old generation was never stopped")
        master.tick(after: 11)
        #expect(master.generations == [1], "nothing more of generation 2 is started")
    }

    @Test func scalingUpAndDown() {
        var master = Harness(workers: 2)
        master.tick()
        master.readyAll()
        master.run(master.policy.scale(by: 1, cause: "SIGTTIN"))
        #expect(master.log.last == "SIGTTIN: 3 workers")
        master.tick()
        #expect(master.pids(.starting) == [103])
        master.readyAll()
        master.run(master.policy.scale(by: -1, cause: "SIGTTOU"))
        master.run(master.policy.scale(by: -1, cause: "SIGTTOU"))
        master.tick()
        #expect(master.terminated == [103, 102], "the newest are stopped first")
        master.run(master.policy.scale(by: -5, cause: "SIGTTOU"))
        #expect(master.policy.desired == 1, "never below one")
    }

    @Test func stoppingWaitsForTheWorkersThenKillsTheOverdue() {
        var master = Harness(workers: 2)
        master.tick()
        master.readyAll()
        master.run(master.policy.stop(cause: "SIGTERM", immediately: false, now: master.now))
        #expect(master.terminated == [101, 102])
        #expect(master.notified.last == ["STOPPING=1"])
        master.exit(101, "exited with status 0")
        master.tick(after: 30)
        #expect(master.killed.isEmpty)
        master.tick(after: 6)
        #expect(master.killed == [102])
        #expect(master.policy.finished == nil)
        master.exit(102, "was killed by signal 9 (Killed)")
        #expect(master.policy.finished == 0)
        #expect(master.policy.workers.isEmpty)
        master.tick()
        #expect(master.policy.workers.isEmpty, "nothing is started while stopping")
    }

    @Test func stoppingNowKillsEveryWorker() {
        var master = Harness(workers: 2)
        master.tick()
        master.run(master.policy.stop(cause: "SIGQUIT", immediately: true, now: master.now))
        #expect(master.killed == [101, 102])
        #expect(master.log.first == "SIGQUIT: stopping now")
        master.run(master.policy.reload(cause: "SIGHUP", now: master.now))
        #expect(master.policy.generation == 1, "no reload while stopping")
    }

    @Test func aSpawnErrorBeforeAnyWorkerServedStopsTheMaster() {
        var master = Harness(workers: 1)
        master.spawnFails = true
        master.tick()
        #expect(master.log.contains("cannot start a worker: no"))
        #expect(master.policy.finished == 1)
    }

    @Test func aSpawnErrorLaterIsRetried() {
        var master = Harness(workers: 1)
        master.tick()
        master.readyAll()
        master.spawnFails = true
        master.exit(101)
        #expect(master.log.contains("worker 1 (pid 101) exited with status 1; its replacement did not start"))
        #expect(master.policy.phase == .serving)
        master.spawnFails = false
        master.tick(after: 0.5)
        #expect(master.policy.workers.isEmpty)
        master.tick(after: 0.6)
        #expect(master.pids(.starting) == [102])
    }

    @Test func statusLinesNameEachWorkersState() {
        var master = Harness(workers: 2)
        master.tick()
        master.ready(101)
        master.tick(after: 3)
        let lines = master.policy.statusLines(masterPID: 7, now: master.now)
        #expect(lines == ["master pid 7: 2 workers wanted, generation 1, 0 restarts",
                          "worker 1 pid 101 generation 1 serving: 0 requests, RSS 0 MiB, up 3 s",
                          "worker 2 pid 102 generation 1 starting: 0 requests, RSS 0 MiB, up 3 s"])
    }
}
