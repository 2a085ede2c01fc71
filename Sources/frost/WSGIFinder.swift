import Foundation

/// Finds a WSGI application the way a user would point at one: Django's manage.py and
/// its settings package's wsgi.py, or a module with a top-level `application`, `app` or
/// `create_app` (Flask's application factory).
enum WSGIFinder {
    struct Found {
        let wsgi: String
        let console: String?
        let why: String
    }

    static func find(inProject root: String) -> Found? {
        let fm = FileManager.default
        if let manage = try? String(contentsOfFile: root + "/manage.py", encoding: .utf8),
           let settings = settingsModule(in: manage) {
            let package = String(settings.split(separator: ".").first ?? "")
            if fm.fileExists(atPath: root + "/" + package + "/wsgi.py") {
                return Found(wsgi: package + ".wsgi:application", console: root + "/manage.py",
                             why: "Django's manage.py (\(settings))")
            }
        }
        var candidates: [(module: String, path: String)] = []
        for name in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted() {
            let path = root + "/" + name
            if name.hasSuffix(".py"), name != "setup.py", name != "manage.py" {
                candidates.append((String(name.dropLast(3)), path))
            } else if fm.fileExists(atPath: path + "/__init__.py") {
                for inner in ["__init__", "app", "wsgi", "main"] where fm.fileExists(atPath: "\(path)/\(inner).py") {
                    candidates.append((inner == "__init__" ? name : "\(name).\(inner)", "\(path)/\(inner).py"))
                }
            }
        }
        for candidate in candidates {
            if let found = find(inScript: candidate.path, module: candidate.module) { return found }
        }
        return nil
    }

    /// A script that defines a WSGI callable (and no ISAPI factory of its own).
    static func find(inScript path: String, root: String) -> Found? {
        find(inScript: path, module: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
    }

    private static func find(inScript path: String, module: String) -> Found? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.contains("__ExtensionFactory__") else {
            return nil
        }
        let lines = text.split(separator: "\n").map(String.init)
        for (name, suffix) in [("application", ""), ("app", ""), ("create_app", "()")] {
            let defined = lines.contains { line in
                line.hasPrefix("\(name) =") || line.hasPrefix("\(name)=") || line.hasPrefix("def \(name)(")
                    || line.hasPrefix("\(name): ")
            }
            if defined { return Found(wsgi: "\(module):\(name)\(suffix)", console: nil, why: "\(name) in \(path)") }
        }
        return nil
    }

    /// 'mysite.settings' from `os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')`.
    static func settingsModule(in manage: String) -> String? {
        guard let range = manage.range(of: "DJANGO_SETTINGS_MODULE") else { return nil }
        let rest = manage[range.upperBound...].drop { $0 != "," }.dropFirst().drop { $0 == " " }
        guard let quote = rest.first, quote == "'" || quote == "\"" else { return nil }
        let value = rest.dropFirst().prefix { $0 != quote }
        return value.isEmpty ? nil : String(value)
    }
}
