import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Dropping root before any Python runs: a worker (or the single process) started as
/// root with `--user NAME` becomes NAME, with NAME's primary and supplementary groups,
/// and checks that it cannot become root again. The master keeps root only to bind and to
/// spawn, as nginx's does.
public enum Privileges {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// The user named.
        public let user: String
        public let message: String
        public var description: String { "--user \(user): \(message)" }
    }

    /// Becomes `user` when running as root; as that user already, nothing to do; as anyone
    /// else, an error (only root can change user).
    public static func drop(to user: String) throws {
        guard let entry = getpwnam(user) else { throw Failure(user: user, message: "no such user on this system") }
        let uid = entry.pointee.pw_uid, gid = entry.pointee.pw_gid
        if geteuid() != 0 {
            guard geteuid() == uid else {
                throw Failure(user: user, message: "only root can change user (running as uid \(geteuid()))")
            }
            return
        }
        guard initgroups(user, gid) == 0 else { throw Failure(user: user, message: "initgroups: \(errnoDescription())") }
        guard setgid(gid) == 0 else { throw Failure(user: user, message: "setgid(\(gid)): \(errnoDescription())") }
        guard setuid(uid) == 0 else { throw Failure(user: user, message: "setuid(\(uid)): \(errnoDescription())") }
        if uid != 0 && (setuid(0) == 0 || geteuid() == 0) {
            throw Failure(user: user, message: "root could be regained after the change; refusing to go on")
        }
    }
}
