// frost-stub: the executable copied into every bundle: a master, a worker or a single process, or the console.
//
// The generic executable copied into every bundle as `_NAME` (the loader) and `NAME`
// (the console). It imports no Foundation: Glibc, FrostRuntime and what they need.
#if canImport(Glibc)
import Glibc
#endif
import FrostRuntime

exit(LoaderMain.run(CommandLine.arguments))
