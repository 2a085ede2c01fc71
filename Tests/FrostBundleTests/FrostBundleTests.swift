import Testing
import FrostBundle

@Suite struct BundleLayoutTests {
    @Test func loaderNameSelectsTheModule() {
        let layout = BundleLayout(executablePath: "/srv/dist/hello/_hello")
        #expect(layout.role == .loader)
        #expect(layout.name == "hello")
        #expect(layout.directory == "/srv/dist/hello")
        #expect(layout.archivePath == "/srv/dist/hello/hello.zip")
        #expect(layout.libraryDirectory == "/srv/dist/hello/lib")
        #expect(layout.manifestPath == "/srv/dist/hello/bundle.json")
        #expect(layout.standardLibraryArchive(major: 3, minor: 11) == "/srv/dist/hello/lib/python311.zip")
        #expect(layout.extensionModuleDirectory == "/srv/dist/hello/lib/lib-dynload")
    }

    @Test func renamedLoaderLooksForTheOtherModule() {
        let layout = BundleLayout(executablePath: "/srv/dist/hello/_other")
        #expect(layout.name == "other")
        #expect(layout.archivePath == "/srv/dist/hello/other.zip")
    }

    @Test func nameWithoutUnderscoreIsTheConsole() {
        let layout = BundleLayout(executablePath: "/srv/dist/hello/hello")
        #expect(layout.role == .console)
        #expect(layout.name == "hello")
        #expect(BundleLayout(executablePath: "/_").role == .console)
        #expect(BundleLayout(executablePath: "/_x").directory == "/")
    }

    @Test func moduleNamesAreChecked() {
        #expect(BundleLayout.problemWithModuleName("hello") == nil)
        #expect(BundleLayout.problemWithModuleName("pkg.sub_mod") == nil)
        #expect(BundleLayout.problemWithModuleName("héllo") == nil)
        #expect(BundleLayout.problemWithModuleName("my-app") != nil)
        #expect(BundleLayout.problemWithModuleName("9lives") != nil)
        #expect(BundleLayout.problemWithModuleName("a..b") != nil)
        #expect(BundleLayout.problemWithModuleName("") != nil)
    }

    @Test func fileSystemQueries() {
        #expect(FileSystem.isRegularFile("/etc/hostname") || FileSystem.isRegularFile("/etc/passwd"))
        #expect(!FileSystem.isRegularFile("/etc"))
        #expect(FileSystem.isDirectory("/etc"))
        #expect(FileSystem.currentExecutablePath()?.hasPrefix("/") == true)
    }
}
