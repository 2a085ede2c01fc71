import Testing
@testable import FrostServer

@Suite struct ServerHelperTests {
    @Test func percentDecodingLeavesBadEscapesAlone() {
        #expect(percentDecoded("/a%20b/%E2%82%AC") == "/a b/€")
        #expect(percentDecoded("/100%") == "/100%")
        #expect(percentDecoded("/%zz") == "/%zz")
    }

    @Test func htmlEscaping() {
        #expect(htmlEscaped("<a href=\"x\">&</a>") == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;")
    }

    @Test func trimming() {
        #expect("  \tvalue \r\n".trimmingCharacters(in: " \t\r\n") == "value")
        #expect("".trimmingCharacters(in: " ") == "")
    }

    @Test func reasonPhrases() {
        #expect(HTTPReason.phrase(404) == "Not Found")
        #expect(HTTPReason.phrase(599) == "Status 599")
    }
}
