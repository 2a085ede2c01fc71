// frost: the command-line tool: one file per subcommand, every failure reported in one place.

import ArgumentParser
import Foundation
import FrostArchive
import FrostBundle
import FrostFreeze

/// `frost`, the command-line tool: one file per subcommand, errors reported here.
///
/// Every failure reaches the user as one `frost: error: …` line that names the file, key
/// or entry and what to fix, with a documented exit status: 0 success, 1 a build,
/// verification or I/O failure, 2 bad input (a spec, a flag, a missing file), and
/// ArgumentParser's 64 for a command line it cannot parse.
@main
struct Frost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frost",
        abstract: "Freeze Python web extensions into self-contained Linux bundles.",
        discussion: "Exit status: 0 success, 1 a build, verification or I/O failure, 2 bad input (spec, flags, files).",
        version: "0.1.0",
        subcommands: [BuildCommand.self, RunCommand.self, InitCommand.self, InspectCommand.self, VerifyCommand.self, ImageCommand.self,
                      ArchiveCommand.self]
    )

    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)  // usage errors, --help, --version: ArgumentParser's own output
        }
        do {
            try command.run()
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch let error where error is ValidationError || error is CleanExit || isArgumentParserError(error) {
            Self.exit(withError: error)  // `frost --help` and `frost help build` run ArgumentParser's help command, which throws
        } catch {
            printError("frost: error: \(error)")
            Foundation.exit(ExitStatus.of(error))
        }
    }
}

/// Whether ArgumentParser threw `error` itself (its help command reports the help it
/// printed as an internal error type), so that it prints it, not us.
private func isArgumentParserError(_ error: Error) -> Bool {
    String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
}

/// A failure the command itself finds, before any library is involved.
struct CommandError: Error, CustomStringConvertible {
    enum Kind {
        /// A missing or wrong input: exit status 2.
        case badInput
        /// The command ran and found a problem (differences, a run that could not start): 1.
        case failure
    }

    let kind: Kind
    /// The file or directory concerned.
    let subject: String
    let message: String

    init(_ kind: Kind, subject: String, _ message: String) {
        self.kind = kind
        self.subject = subject
        self.message = message
    }

    var description: String { message }
}

/// Exit statuses: 0 success, 1 a failure, 2 bad input.
enum ExitStatus {
    static let failure: Int32 = 1
    static let badInput: Int32 = 2

    /// Bad input is what the user wrote (spec, hooks, report name, a path that is not
    /// there); everything else is a failure of the build or of what it read.
    static func of(_ error: Error) -> Int32 {
        switch error {
        case let error as CommandError: return error.kind == .badInput ? badInput : failure
        case is SpecError, is Hooks.FormatError, is ImportReport.FormatError, is ImportRecord.ReadError: return badInput
        default: return failure
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// The frost-stub next to this executable (as `swift build` and installs lay them out).
func defaultStubPath() -> String {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    let beside = executable.deletingLastPathComponent().appendingPathComponent("frost-stub").path
    if FileManager.default.fileExists(atPath: beside) { return beside }
    if let self = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        return URL(fileURLWithPath: self).deletingLastPathComponent().appendingPathComponent("frost-stub").path
    }
    return beside
}
