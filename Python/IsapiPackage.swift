// IsapiPackage: the isapi package's Python sources, shipped as a resource of the packager.

import Foundation

/// Where the `isapi` package's sources are, for the packager to put into every bundle.
public enum IsapiPackage {
    /// The `isapi` directory (its parent goes on the analysis path).
    public static var directory: URL {
        Bundle.module.url(forResource: "isapi", withExtension: nil)!
    }
}
